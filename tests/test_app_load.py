"""The app under load and hostile input: bench/app_load.py's own run, with fewer clients and short
pieces, against a real `python app.py` (real gradio_client clients, real uploads over HTTP)."""

from __future__ import annotations

from pathlib import Path

from app_support import app_checkpoint

from bench.app_load import run_load
from bench.load_inputs import HOSTILE
from bench.load_watch import AGE_SLACK

MAX_AGE = 30.0  # seconds a temp file may live: short enough to see them all expire (the test waits this long
# at its end), long enough that an upload outlives its request on a loaded 2-core machine (6 s did not; the
# longest upload request took 7.4 s with the test's 4 clients and three other suites on the same 2 cores: 4x)


def test_app_serves_clients_at_once_refuses_bad_uploads_and_cleans_up(tmp_path: Path,
                                                                      validation_files: list[Path]) -> None:
    rows, summary = run_load(app_checkpoint(tmp_path), tmp_path / "load", clients=4, seconds=2,
                             max_age=MAX_AGE, source=validation_files[0])
    assert summary["failures"] == 0, "\n".join(summary["failure_list"])

    by_name = {r["request"]: r for r in rows}
    good = [r for r in rows if r["kind"] == "good"]
    assert len(good) == 4 + 2 and all(r["outcome"] == "Done." and r["notes"] > 0 for r in good)
    for bad in HOSTILE:  # each bad upload: one line naming the file, not a traceback
        outcome = by_name[bad.name]["outcome"]
        if bad.message:
            assert bad.message in outcome and "Traceback" not in outcome, outcome
            assert outcome.startswith(bad.name + ": "), outcome
        else:
            assert outcome == "Done." and by_name[bad.name]["notes"] > 0
    for attack in ("path outside uploads", "../ path out of uploads"):
        assert by_name[attack]["outcome"].startswith("error"), by_name[attack]
    assert by_name["upload named ../../x.mid"]["outcome"] == "Done. as comagen_comagen-escape_seed1_v1.mid"
    assert by_name["leaves mid-stream"]["outcome"].startswith("idle after")
    assert not (tmp_path / "load" / "comagen-escape.mid").exists()

    assert summary["server_alive_after"] and summary["temp_files_expired"]
    assert summary["oldest_temp_file_s"] <= MAX_AGE + AGE_SLACK
    assert summary["requests_served"] == len(rows) - 1  # all but the client that left
    assert summary["rss_start_mib"] < summary["rss_peak_mib"]
