"""Reading a registry manifest folder: its tables as text (CSV through pandas, Parquet through
the store's DuckDB helper) and its column mapping (``mapping.yaml`` or ``--mapping FILE``, plus
``--column`` options). What is read is checked by :mod:`sscmort_core.pipeline.manifest`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import pandas as pd
import yaml

from sscmort_core import store as st_store
from sscmort_core.pipeline.manifest import TABLES, ColumnMapping, Problem, RawTable, parse_mapping

MAPPING_FILE = "mapping.yaml"


def read_tables(folder: Path, mapping_file: Path | None = None, columns: Sequence[str] = ()
                ) -> tuple[dict[str, RawTable], ColumnMapping, list[Problem]]:
    """The manifest's tables as text, its column mapping, and the problems met reading them
    (a problem names the file, never a cell)."""
    problems: list[Problem] = []
    tables: dict[str, RawTable] = {}
    for name in TABLES:
        found = [folder / f"{name}.{ext}" for ext in ("csv", "parquet")]
        found = [p for p in found if p.is_file()]
        if len(found) > 1:
            problems.append(Problem(found[0].name, None, None, f"both {name}.csv and "
                                    f"{name}.parquet exist; keep one"))
            continue
        if found:
            frame, problem = _read_one(found[0])
            if problem:
                problems.append(Problem(found[0].name, None, None, problem))
            else:
                tables[name] = RawTable(name, found[0].name, frame)
    spec, source = None, MAPPING_FILE
    path = mapping_file or (folder / MAPPING_FILE)
    if mapping_file is not None or path.is_file():
        source = path.name
        try:
            spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            problems.append(Problem(source, None, None, "cannot be read"))
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            problems.append(Problem(source, None if mark is None else mark.line + 1, None,
                                    "not valid YAML"))
    mapping, found = parse_mapping(spec, columns, source)
    return tables, mapping, problems + found


def _read_one(path: Path) -> tuple[pd.DataFrame, str | None]:
    try:
        if path.suffix == ".csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False,
                                encoding="utf-8-sig")
        else:
            frame = st_store.read_table_file(path)
    except UnicodeDecodeError:
        return pd.DataFrame(), "not UTF-8 text; save it as UTF-8 CSV"
    except pd.errors.EmptyDataError:
        return pd.DataFrame(), "empty; give a header row and one row per line"
    except pd.errors.ParserError as err:
        m = re.search(r"line (\d+)", str(err))
        where = f" (row {m[1]} has a different number of fields)" if m else ""
        return pd.DataFrame(), f"cannot be read as CSV{where}"
    except Exception:  # noqa: BLE001 - duckdb / OS errors: say which file, show no cell
        return pd.DataFrame(), f"cannot be read as {path.suffix.lstrip('.')}"
    return frame.astype(str), None
