"""House rules that a test can check (../shared/DESIGN.md "Layout", STYLE.md "house style").

* The core never imports streamlit (nor the app's pages).
* Layers: a module of sscmort_core imports only its own unit (a top-level module or
  subpackage) or units of a lower layer (:data:`LAYERS`). Imports inside function bodies are
  edges too.
* No import cycle between modules, function-body imports included.
* An import inside a function body is for a heavy third-party library only (:data:`HEAVY`);
  one of sscmort's own modules imported there carries a ``# heavy: LIB`` comment naming a heavy
  library that the module really loads (directly or through its own imports).

:func:`import_graph` and :func:`violations` take any source folder, so the test of the test
plants a back-edge and a cycle in a copy of the package and sees them refused.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "sscmort_core"

# Low to high. A unit may import its own modules and any unit of a strictly lower layer.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("labels", "folds", "util", "access"),
    ("predictions", "cards"),
    ("store", "imaging", "synthetic", "evaluation", "pacs"),
    ("lungs",),
    ("scans", "dicomout"),
    ("radiomics",),
    ("tabular", "deep"),
    ("pipeline",),
    ("views",),
    ("cli",),
    ("__init__", "__main__"),
)
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
# Libraries slow enough to load (hundreds of ms or more) that a module may defer them to the
# function that needs them, so that e.g. ``sscmort --help`` starts in well under a second.
# tqdm is lighter (about 50 ms: it loads importlib.metadata) but only a drawn progress bar needs
# it, so ``--help`` and ``--quiet`` commands skip it.
HEAVY = frozenset({"torch", "timm", "safetensors", "huggingface_hub", "radiomics", "SimpleITK",
                   "shap", "sklearn", "joblib", "lifelines", "vl_convert", "pydicom", "scipy",
                   "pandas", "duckdb", "ray", "tqdm"})
HEAVY_COMMENT = re.compile(r"#\s*heavy:\s*(?P<libs>[\w., ]+)")


@dataclass(frozen=True)
class Edge:
    source: str  # importing module, dotted
    target: str  # imported sscmort module, dotted
    line: int
    in_function: bool
    comment: str


@dataclass(frozen=True)
class Graph:
    modules: dict[str, Path]
    edges: tuple[Edge, ...]
    external: dict[str, frozenset[str]]  # module -> top-level third-party names at module level
    function_external: tuple[tuple[str, str, int], ...]  # (module, library, line)


def _module_name(root: Path, path: Path) -> str:
    parts = ("sscmort_core", *path.relative_to(root).with_suffix("").parts)
    name = ".".join(parts)
    return name.removesuffix(".__init__")


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The sscmort module an imported dotted name refers to (a module, or a name in one)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _inside_function(tree: ast.AST) -> set[int]:
    ids = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            ids.update(id(n) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom)))
    return ids


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def import_graph(root: Path) -> Graph:
    """Every import of every module under ``root`` (a folder named like the package)."""
    modules = {_module_name(root, p): p for p in root.rglob("*.py")}
    stdlib = set(sys.stdlib_module_names)
    edges, external, fn_ext = [], {}, []
    for mod, path in modules.items():
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        tree = ast.parse(source, str(path))
        in_fn = _inside_function(tree)
        package = mod if _is_package(path) else mod.rpartition(".")[0]
        ext: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative import
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    prefix = f"{base}.{node.module}" if node.module else base
                else:
                    prefix = node.module or ""
                names = [f"{prefix}.{a.name}" for a in node.names] or [prefix]
            else:
                continue
            end = lines[node.end_lineno - 1] if node.end_lineno else ""
            first = lines[node.lineno - 1]
            comment = " ".join(x.split("#", 1)[1] for x in (first, end) if "#" in x)
            for name in names:
                top = name.split(".")[0]
                if top == "sscmort_core":
                    target = _resolve(name, modules)
                    if target and target != mod:
                        edges.append(Edge(mod, target, node.lineno, id(node) in in_fn,
                                          "#" + comment if comment else ""))
                elif top not in stdlib and top != "__future__":
                    if id(node) in in_fn:
                        fn_ext.append((mod, top, node.lineno))
                    else:
                        ext.add(top)
        external[mod] = frozenset(ext)
    return Graph(modules, tuple(edges), external, tuple(fn_ext))


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _loads(graph: Graph, module: str) -> set[str]:
    """Third-party libraries a module loads at import time, through its own imports too."""
    seen, todo, libs = set(), [module], set()
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        libs |= graph.external.get(m, frozenset())
        todo.extend(e.target for e in graph.edges if e.source == m and not e.in_function)
        parent = m.rpartition(".")[0]  # importing a.b.c runs a/__init__ and a/b/__init__
        if parent in graph.modules:
            todo.append(parent)
    return libs


def find_cycle(graph: Graph) -> list[str] | None:
    """One import cycle (module names, first repeated at the end), or None."""
    adj: dict[str, set[str]] = {}
    for e in graph.edges:
        adj.setdefault(e.source, set()).add(e.target)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(adj.get(m, ())):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if state.get(t) is None:
                found = visit(t)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph.modules):
        if state.get(m) is None:
            found = visit(m)
            if found:
                return found
    return None


def violations(graph: Graph) -> list[str]:
    """Every broken rule, one readable line each."""
    out = []
    for e in graph.edges:
        src, dst = unit_of(e.source), unit_of(e.target)
        where = f"{e.source}:{e.line}"
        if src not in RANK or dst not in RANK:
            out.append(f"{where}: unit {src if src not in RANK else dst!r} is in no layer")
        elif src != dst and RANK[dst] >= RANK[src]:
            out.append(f"{where}: {src} (layer {RANK[src]}) imports {e.target} "
                       f"(layer {RANK[dst]}): imports run from higher layers to lower ones")
        if e.in_function:
            m = HEAVY_COMMENT.search(e.comment)
            named = {x.strip() for x in m["libs"].replace(",", " ").split()} if m else set()
            real = _loads(graph, e.target) & HEAVY & named
            if not real:
                out.append(f"{where}: function-body import of {e.target} needs a "
                           f"'# heavy: LIB' comment naming a heavy library it loads "
                           f"(it loads {sorted(_loads(graph, e.target) & HEAVY) or 'none'})")
    for mod, lib, line in graph.function_external:
        if lib not in HEAVY:
            out.append(f"{mod}:{line}: {lib} is imported inside a function; only heavy "
                       f"libraries ({', '.join(sorted(HEAVY))}) may be")
    cycle = find_cycle(graph)
    if cycle:
        out.append("import cycle: " + " -> ".join(cycle))
    return out


def test_layers_cycles_and_function_imports_hold():
    graph = import_graph(CORE)
    assert len(graph.modules) > 60 and len(graph.edges) > 200  # the walk saw the package
    assert violations(graph) == []


def test_every_unit_sits_in_a_layer_and_has_a_docstring_saying_what_it_may_import():
    units = {unit_of(m) for m in import_graph(CORE).modules}
    assert units <= set(RANK), sorted(units - set(RANK))
    for pkg in sorted(p for p in CORE.iterdir() if (p / "__init__.py").is_file()):
        doc = ast.get_docstring(ast.parse((pkg / "__init__.py").read_text())) or ""
        assert "may import" in doc.lower(), f"{pkg.name}/__init__.py"


def _copy_core(tmp_path: Path) -> Path:
    dest = tmp_path / "sscmort_core"
    shutil.copytree(CORE, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def test_a_planted_back_edge_is_refused(tmp_path):
    root = _copy_core(tmp_path)
    _append(root / "store" / "cohort.py", "\n\ndef _planted():\n"
            "    from sscmort_core.pipeline import demo  # heavy: torch\n    return demo\n")
    found = violations(import_graph(root))
    assert any(v.startswith("sscmort_core.store.cohort:") and "imports sscmort_core.pipeline"
               in v for v in found), found


def test_a_planted_cycle_is_refused(tmp_path):
    root = _copy_core(tmp_path)
    # both inside one unit (no layer rule broken): only the cycle check can see it
    _append(root / "lungs" / "segmentation.py",
            "\n\ndef _planted():\n    from sscmort_core.lungs import qct  # heavy: scipy\n"
            "    return qct\n")
    found = violations(import_graph(root))
    assert any(v.startswith("import cycle:") and "sscmort_core.lungs.qct" in v
               for v in found), found


def test_a_function_body_import_without_a_reason_is_refused(tmp_path):
    root = _copy_core(tmp_path)
    _append(root / "pipeline" / "jobs.py",
            "\n\ndef _planted():\n    from sscmort_core.store import open_store\n"
            "    import threadpoolctl\n    return open_store, threadpoolctl\n")
    found = violations(import_graph(root))
    assert any("function-body import of sscmort_core.store" in v for v in found), found
    assert any("threadpoolctl is imported inside a function" in v for v in found), found


@pytest.mark.parametrize("rule", ["streamlit", "pages"])
def test_the_core_never_imports_the_app(rule):
    offenders = []
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == rule or n.startswith(rule + ".") for n in names):
                offenders.append(str(path.relative_to(CORE)))
    assert offenders == []


def test_importing_every_core_module_loads_no_streamlit():
    modules = sorted(import_graph(CORE).modules)
    modules = [m for m in modules if not m.endswith("__main__")]
    code = ("import importlib, sys\n"
            f"for m in {modules!r}:\n    importlib.import_module(m)\n"
            "print('streamlit' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=CORE.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_the_cli_builds_its_parser_without_heavy_libraries():
    """``sscmort --help`` stays quick: building the parser imports none of :data:`HEAVY`."""
    code = ("import sys\nfrom sscmort_core.cli import build_parser\nbuild_parser()\n"
            f"print(sorted(m for m in {sorted(HEAVY)!r} if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=CORE.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
