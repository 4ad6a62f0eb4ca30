"""benchmarks/server_load.py and server_memory.py run end to end at a tiny size and write complete result
files (their timings are not asserted: they belong in the scripts' output)."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import server_load  # noqa: E402
import server_memory  # noqa: E402


def test_server_load_writes_a_complete_result(tmp_path):
    out = tmp_path / "server_load.json"
    assert server_load.main(["--clients", "4", "--per-client", "2", "--images", "3", "--size", "8x6",
                             "--stalled", "2", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["submissions"] == 8 and r["clients"] == 4
    # Clients k = 0..3 send mix[(k + j) % 7] for j = 0, 1: mix[0] and mix[2] are valid, the rest not.
    # Every attack of issue 41 beside the load leaves the same answers.
    assert set(r["under_attack"]) == {"stalled", "malformed", "upgrade", "headers"}
    for phase in [r, *r["under_attack"].values()]:
        assert phase["answers"] == {"200": 3, "422": 5}
        assert phase["acknowledged"] == 3 and phase["acknowledged_missing_from_db"] == 0
        assert phase["refusals_recorded"] == phase["refusals"] == 5 and phase["db_integrity"] == "ok"
        assert phase["latency_s"]["p50"] > 0 and phase["server_peak_rss_mib"] > 0
    assert all(a["attack_requests"] > 0 for a in r["under_attack"].values())


def test_server_memory_writes_a_complete_result(tmp_path):
    out = tmp_path / "server_memory.json"
    assert server_memory.main(["--only", "in one read,Transfer-Encoding,token replaced", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    rows = {row["attack"].split(" (")[0]: row for row in r["attacks"]}
    assert set(rows) == {"10,000 headers in one read", "Content-Length with Transfer-Encoding, a request pipelined "
                         "behind", "token replaced mid-upload"}
    assert rows["10,000 headers in one read"]["answer"] == {"answers": ["HTTP/1.1 431"], "answers per connection": 1.0,
                                                            "closed by the server": 20}
    token = rows["token replaced mid-upload"]["answer"]
    assert token["answer"] == "HTTP/1.1 401" and token["recorded"] == 0 and "replaced while" in token["body"]
    for row in rows.values():
        assert row["answers_next_request"] and row["legitimate_client"]["failed"] == []
        assert row["file_modes"] == {"database": "0o600", "upload folder": "0o700"}
        assert row["log_bytes"] < 1000  # one record at most
