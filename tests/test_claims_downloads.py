"""lipstudy.claims.downloads: the claims JSON and its CSV as the claims page links them (known rows,
and links whose bytes are the files')."""
from __future__ import annotations

import base64
import io
import json
import re

import pandas as pd

from lipstudy.claims import downloads

RECORDS = [
    {"section": "3.1", "claim": "Attention is the best baseline", "statistic": "A - max(others)", "paper": 1.28,
     "paper_opposite": False, "ours": 0.5, "low": -0.2, "high": 1.1, "per_seed": [0.4, 0.6, 0.5],
     "seeds_used": [0, 1, 2], "margin": 0.5, "detectable": 1.9, "control": None, "verdict": "undecided",
     "reason": "interval spans 0", "images": 24,
     "bins": [{"bin": "SegNet", "paper": 3.0, "ours": 2.0, "low": 1.0, "high": 3.0, "per_seed": [2.0, 2.1, 1.9],
               "margin": 0.5, "detectable": 1.2, "verdict": "supported", "reason": "", "images": 24}]},
    {"section": "5.2", "claim": "SSL improves DeepLabV2", "statistic": "SSL - control", "paper": 0.8,
     "paper_opposite": False, "ours": -0.3, "low": None, "high": None, "per_seed": [-0.3], "seeds_used": [0],
     "margin": 0.5, "detectable": None, "control": "DeepLabV2 + stage-2 epochs without SSL",
     "verdict": "undecided", "reason": "1 seed", "images": 24, "bins": []},
]


def test_claims_frame_has_a_row_per_claim_and_per_bin():
    t = downloads.claims_frame(RECORDS)
    assert list(t.columns) == downloads.CSV_COLUMNS and len(t) == 3
    assert list(t["bin"]) == ["", "SegNet", ""]
    assert t.loc[0, "per_seed"] == "0.4; 0.6; 0.5" and t.loc[0, "seeds_used"] == "0; 1; 2"
    # a bin row carries its claim's statement and its own numbers
    assert t.loc[1, "claim"] == "Attention is the best baseline" and t.loc[1, "ours"] == 2.0
    assert t.loc[1, "verdict"] == "supported" and t.loc[2, "control"].endswith("without SSL")


def test_the_links_download_the_files_the_build_wrote(tmp_path, monkeypatch):
    monkeypatch.setenv("LIPSTUDY_RESULTS", str(tmp_path))
    path = downloads.claims_file("smoke")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"profile": "smoke", "claims": RECORDS}))
    links = downloads.download_links("smoke")
    found = dict(re.findall(r'download="([^"]+)" href="data:[^;]+;base64,([^"]+)"', links))
    assert set(found) == {"smoke.json", "smoke.csv"}
    assert base64.b64decode(found["smoke.json"]) == path.read_bytes()
    csv = base64.b64decode(found["smoke.csv"]).decode()
    assert csv == (tmp_path / "claims" / "smoke.csv").read_text()  # the CSV is written beside the JSON
    assert len(pd.read_csv(io.StringIO(csv))) == 3
