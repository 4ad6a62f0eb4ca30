"""benchmarks/server_load.py runs end to end at a tiny size and writes a complete result file (its
timings are not asserted: they belong in the script's output)."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import server_load  # noqa: E402


def test_server_load_writes_a_complete_result(tmp_path):
    out = tmp_path / "server_load.json"
    assert server_load.main(["--clients", "4", "--per-client", "2", "--images", "3", "--size", "8x6",
                             "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["submissions"] == 8 and r["clients"] == 4
    # Clients k = 0..3 send mix[(k + j) % 7] for j = 0, 1: mix[0] and mix[2] are valid, the rest not.
    assert r["answers"] == {"200": 3, "422": 5}
    assert r["acknowledged"] == 3 and r["acknowledged_missing_from_db"] == 0
    assert r["refusals_recorded"] == r["refusals"] == 5 and r["db_integrity"] == "ok"
    assert r["latency_s"]["p50"] > 0 and r["server_peak_rss_mib"] > 0
