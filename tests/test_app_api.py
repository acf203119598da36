"""The app's API refuses a bad call in one line that says what was wrong, through gradio_client and
plain HTTP alike: a setting out of range or of the wrong type (named), a path that was not uploaded to
the server, a file that is gone; and the server keeps serving."""

from __future__ import annotations

import json
import urllib.request

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

import studio

FILE = {"meta": {"_type": "gradio.FileData"}}


@pytest.fixture(scope="module")
def client(shipped_app: str) -> Client:
    return Client(shipped_app, verbose=False)


def http_call(url: str, endpoint: str, **changes: object) -> tuple[str, object]:
    """POST /gradio_api/call/<endpoint> with the endpoint's defaults and `changes`, then read the
    event stream: its last event's name and data."""
    with urllib.request.urlopen(f"{url}/gradio_api/info") as r:
        params = json.load(r)["named_endpoints"][f"/{endpoint}"]["parameters"]
    values = {p["parameter_name"]: p.get("parameter_default") for p in params}
    assert set(changes) <= set(values)
    quick = {"prompt": studio.NOTHING, "upload": None, "seconds": 2}
    values.update({k: v for k, v in quick.items() if k in values} | changes)
    post = urllib.request.Request(f"{url}/gradio_api/call/{endpoint}", json.dumps({"data": list(values.values())})
                                  .encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(post) as r:
        event_id = json.load(r)["event_id"]
    with urllib.request.urlopen(f"{url}/gradio_api/call/{endpoint}/{event_id}") as r:
        lines = r.read().decode().splitlines()
    event = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")][-1]
    data = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")][-1]
    return event, json.loads(data)


def refused(url: str, endpoint: str = "generate", **changes: object) -> str:
    """The one-line error a plain HTTP call gets."""
    event, data = http_call(url, endpoint, **changes)
    assert event == "error" and isinstance(data, dict), (event, data)
    assert data["error"] and "\n" not in data["error"], data
    return data["error"]


BAD_SETTINGS = [("temperature", -3), ("top_p", 7), ("seconds", "abc"), ("variations", 1000), ("seed", "x"),
                ("keep_seconds", 0), ("top_k", 2.5), ("random_seed", "yes"), ("form", "ABCDE"),
                ("window_1", 0), ("checkpoint", 7)]


@pytest.mark.parametrize(("name", "value"), BAD_SETTINGS, ids=[n for n, _ in BAD_SETTINGS])
def test_a_bad_setting_is_named_through_gradio_client(client: Client, name: str, value: object) -> None:
    with pytest.raises(AppError, match=f"^{name} must be ") as info:
        client.predict(prompt=studio.NOTHING, upload=None, **{"seconds": 2, name: value}, api_name="/generate")
    assert "\n" not in str(info.value)


def test_bad_settings_paths_and_gone_files_over_plain_http(shipped_app: str, client: Client) -> None:
    assert refused(shipped_app, temperature=-3).startswith("temperature must be a number from 0 to ")
    assert refused(shipped_app, seconds="abc") == "seconds must be a number from 1 to 300, not 'abc'"
    assert refused(shipped_app, "infill", infill_candidates=1000).startswith("infill_candidates must be ")
    assert refused(shipped_app, "continue", composer=["Chopin"]).startswith("composer must be a name")
    for attack in ("../../etc/passwd", "/etc/passwd", "/tmp/no-such-file.mid"):  # refused by gradio: not uploaded
        message = refused(shipped_app, upload={"path": attack, **FILE})
        assert "not uploaded by a user" in message and attack.lstrip("./") in message
    with (studio.PROMPTS_DIR / "satie_gymnopedie_1.mid").open("rb") as fh:  # into gradio's cache, as a page does
        uploaded = httpx.post(f"{shipped_app}/gradio_api/upload", files={"files": fh}).json()[0]
    gone = uploaded.rsplit("/", 1)[0] + "/gone.mid"  # in the upload folder, but no such file
    assert refused(shipped_app, upload={"path": gone, **FILE}) == \
        "gone.mid: the uploaded file is no longer on the server; upload it again"
    event, data = http_call(shipped_app, "generate", upload={"path": uploaded, **FILE}, keep_seconds=2)
    assert event == "complete" and data[0] == "Done."
    assert client.predict(prompt=studio.NOTHING, upload=None, seconds=2, api_name="/generate")[0] == "Done."
