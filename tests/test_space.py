"""The app as a Hugging Face Space: the assembled folder alone (no repository on the path) serves a
generation, git's own reading of the folder's .gitattributes puts every file the Hub wants in LFS
there, and the deploy script without a token or without a reachable hub says so in one line. The hub
itself is never called."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import symusic
from app_support import APP_START_TIMEOUT_S

import studio
from studio.appserver import ROOT, serve
from studio.space import CPU_TORCH_INDEX, HUB_MAX_PLAIN_BYTES, Space, assemble, needs_lfs

ELISE = 'L. van Beethoven: Bagatelle in A minor, WoO 59 "Für Elise"'
NO_REPO_ON_PATH = {"PYTHONPATH": ""}


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Space:
    return assemble(tmp_path_factory.mktemp("space") / "space")


def test_the_space_holds_the_app_and_its_cpu_requirements(space: Space) -> None:
    names = {f.relative_to(space.folder).as_posix() for f in space.files}
    assert {"app.py", "README.md", "packages.txt", "requirements.txt", ".gitattributes", "studio/space.py",
            "comagen/cli.py", "assets/prompts/README.md", "assets/checkpoints/default/model.safetensors",
            "assets/checkpoints/flagship/runtime/step.int8.onnx"} <= names
    assert not [n for n in names if n.split("/")[0] in ("tests", "bench", "training", "docs", "runs")
                or "__pycache__" in n]
    requirements = (space.folder / "requirements.txt").read_text()
    assert f"--extra-index-url {CPU_TORCH_INDEX}" in requirements and "\ntorch==2.13.0+cpu\n" in requirements
    assert "torch==2.13.0\n" in (ROOT / "requirements.txt").read_text()  # the repository keeps its own pin
    assert set((space.folder / "packages.txt").read_text().split()) >= {"libfluidsynth3", "fluid-soundfont-gm"}
    card = (space.folder / "README.md").read_text()
    assert card.startswith("---\n") and "\nsdk: gradio\n" in card and "\napp_file: app.py\n" in card


def test_git_stores_every_large_or_binary_file_of_the_space_with_lfs(space: Space, tmp_path: Path) -> None:
    large = [f for f in space.files if f.stat().st_size > HUB_MAX_PLAIN_BYTES]
    assert len(large) >= 4  # both checkpoints' weights and their ONNX steps (14-21 MB each)
    wanted = sorted({*large, *filter(needs_lfs, space.files)})
    subprocess.run(["git", "init", "-q", str(tmp_path / "g")], check=True)
    git = ["git", f"--git-dir={tmp_path / 'g' / '.git'}", f"--work-tree={space.folder}"]
    out = subprocess.run([*git, "check-attr", "filter", "--", *(str(f.relative_to(space.folder)) for f in wanted)],
                         cwd=space.folder, check=True, capture_output=True, text=True).stdout.splitlines()
    assert len(out) == len(wanted) and all(line.endswith(": filter: lfs") for line in out), out


def test_the_space_folder_alone_serves_a_generation(space: Space, tmp_path: Path) -> None:
    from gradio_client import Client

    env = {**os.environ, **NO_REPO_ON_PATH}
    where = subprocess.run([sys.executable, "-c", "import importlib.util as u; "
                            "print(u.find_spec('comagen').origin); print(u.find_spec('studio').origin)"],
                           cwd=space.folder, env=env, check=True, capture_output=True, text=True).stdout.split()
    assert all(Path(p).resolve().is_relative_to(space.folder.resolve()) for p in where), where
    with serve(None, tmp_path / "app.log", root=space.folder, env=NO_REPO_ON_PATH,
               timeout=APP_START_TIMEOUT_S) as server:
        out = Client(server.url, verbose=False).predict(prompt=ELISE, upload=None, keep_seconds=4, seconds=4, seed=5,
                                                        random_seed=False, api_name="/generate")
    n = studio.MAX_VARIATIONS
    status, wav, midi = out[0], out[3 + 2 * n], out[3 + 3 * n]
    assert status == "Done.", server.log_tail()
    assert symusic.Score.from_midi(Path(midi).read_bytes()).note_num() > 0 and Path(wav).stat().st_size > 44


def deploy(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_HUB_OFFLINE")}
    return subprocess.run([sys.executable, "scripts/deploy_space.py", "someone/comagen", "--out",
                           str(tmp_path / "space"), *args], cwd=ROOT, env={**base, **env}, capture_output=True,
                          text=True, timeout=300)


def test_deploy_without_a_token_only_assembles_and_says_how_to_upload(tmp_path: Path) -> None:
    run = deploy(tmp_path, env={})
    assert run.returncode == 0, run.stderr
    assert f"in {tmp_path / 'space'}" in run.stdout and "no token, so nothing was uploaded" in run.stdout
    assert (tmp_path / "space" / "app.py").is_file()


def test_an_upload_that_cannot_reach_the_hub_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as closed:  # bound, never listening: every connection to it is refused
        closed.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
        run = deploy(tmp_path, "--token", "hf_not_a_token", env={"HF_ENDPOINT": endpoint})
    assert run.returncode == 2
    assert run.stderr.startswith("error: uploading to the Space someone/comagen failed: ")
    assert run.stderr.count("\n") == 1, run.stderr
