"""Peak memory of analysing the real 64-file CT series as the upload page does (issue 17):
``analyse_streams`` (each upload streamed to a temporary folder in 1 MiB chunks, the size
limits checked first) against the baseline of the same run given every file as one bytes
object (``analyse_upload``, how uploads were handled before). Each variant runs in a fresh
process; the figure is that process's peak resident set (ru_maxrss) and its peak Python
allocation (tracemalloc), so imports count the same in both.

Usage: ``python tests/bench/bench_upload_memory.py``
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REAL_CT = REPO.parent / "shared" / "data" / "real_ct" / "philips_A0001_kernel_L"

CHILD = r"""
import json, resource, sys, time, tracemalloc
from pathlib import Path
import sscmort_core.pipeline.analyse as an
from sscmort_core.access.settings import UploadLimits
files = sorted(p for p in Path(sys.argv[2]).iterdir() if p.is_file())
tracemalloc.start()
t0 = time.perf_counter()
if sys.argv[1] == "streams":
    handles = [open(p, "rb") for p in files]
    res = an.analyse_streams([(p.name, p.stat().st_size, h) for p, h in zip(files, handles)],
                             limits=UploadLimits(1 << 30, 2 << 30), secret=b"k" * 32)
else:
    res = an.analyse_upload([(p.name, p.read_bytes()) for p in files], secret=b"k" * 32)
seconds = time.perf_counter() - t0
peak_py = tracemalloc.get_traced_memory()[1]
print(json.dumps({"variant": sys.argv[1], "files": len(files), "seconds": seconds,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "peak_python_mb": peak_py / 2**20,
                  "lung_volume_ml": float(res.lungs.volume_ml)}))
"""


def main() -> int:
    if not REAL_CT.is_dir():
        print(f"the real CT is not at {REAL_CT}", file=sys.stderr)
        return 2
    out = []
    for variant in ("bytes", "streams"):
        got = subprocess.run([sys.executable, "-c", CHILD, variant, str(REAL_CT)], cwd=REPO,
                             capture_output=True, text=True, check=True)
        out.append(json.loads(got.stdout.strip().splitlines()[-1]))
        print(out[-1])
    base, new = out
    assert abs(base["lung_volume_ml"] - new["lung_volume_ml"]) < 1e-6  # the same analysis
    print(f"streams / bytes: peak RSS {new['peak_rss_mb'] / base['peak_rss_mb']:.2f} x, "
          f"peak Python allocation {new['peak_python_mb'] / base['peak_python_mb']:.2f} x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
