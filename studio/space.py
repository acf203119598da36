"""The app as a Hugging Face Space: assemble exactly the folder a Space runs, and upload it.

The folder holds app.py, the `comagen` and `studio` packages, every complete shipped checkpoint, the
shipped prompts, the Space's README card (the repository README's front matter), packages.txt (apt:
FluidSynth and a GM soundfont), a requirements.txt that takes torch's CPU build from its own index
(the default index serves the CUDA build, gigabytes a CPU Space never uses) and a .gitattributes
that stores binaries with Git LFS: the Hub refuses a file over 10 MB, or a binary pushed with git,
that LFS does not store. Only the assembled folder gets those attributes. In this repository, where
the weights are plain git blobs, an LFS filter would make every clone on a machine with git-lfs
show them as modified (its clean filter turns them into pointers) and the next commit convert them.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from comagen.errors import ComagenError
from studio.assets import APP_ROOT
from studio.catalog import find_checkpoints

LFS_PATTERNS = ("*.safetensors", "*.onnx", "*.ts", "*.png", "*.mid", "*.midi", "*.sf2")
LFS_ATTRIBUTES = "filter=lfs diff=lfs merge=lfs -text"
HUB_MAX_PLAIN_BYTES = 10 * 2**20  # larger files must be LFS-stored whatever their content
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
PACKAGES = ("comagen", "studio")
COPIED_FILES = ("app.py", "packages.txt", "soundfonts/README.md")
SKIPPED = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
SPACE_CARD = """
# comagen studio

Continue a solo-piano piece with a Conformer with multi-scale local attention, trained on the
MAESTRO piano performances: pick or upload a MIDI prompt, press **Generate**, watch the
continuation being written, listen to it and download the MIDI.

This folder was assembled by `scripts/deploy_space.py` from the comagen repository, whose README
documents the model, the app and how they were measured. The code is MIT-licensed; the checkpoints,
trained on MAESTRO, carry its CC BY-NC-SA 4.0 terms (see their model cards).
"""


class SpaceError(ComagenError):
    """The Space cannot be assembled or uploaded."""


@dataclass(frozen=True)
class Space:
    """An assembled Space folder and what it holds."""

    folder: Path
    files: list[Path]

    @property
    def megabytes(self) -> float:
        return sum(f.stat().st_size for f in self.files) / 2**20


def assemble(folder: Path, root: Path = APP_ROOT) -> Space:
    """Write the Space into `folder` (absent or empty) from the checkout at `root`."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise SpaceError(f"{folder} is not empty: give a new or empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    copy_app(folder, root)
    readme = (root / "README.md").read_text(encoding="utf-8")
    (folder / "README.md").write_text(front_matter(readme) + SPACE_CARD, encoding="utf-8")
    requirements = (root / "requirements.txt").read_text(encoding="utf-8")
    check_gradio_pin(front_matter(readme), requirements)
    (folder / "requirements.txt").write_text(space_requirements(requirements), encoding="utf-8")
    (folder / ".gitattributes").write_text("".join(f"{p} {LFS_ATTRIBUTES}\n" for p in LFS_PATTERNS))
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    check_lfs(folder, files)
    return Space(folder, files)


def copy_app(folder: Path, root: Path) -> None:
    """app.py, its packages and the shipped assets: every complete checkpoint and the prompts."""
    for name in COPIED_FILES:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, folder / name)
    for package in PACKAGES:
        shutil.copytree(root / package, folder / package, ignore=SKIPPED)
    shutil.copytree(root / "assets" / "prompts", folder / "assets" / "prompts", ignore=SKIPPED)
    for name, bundle in find_checkpoints(root / "assets" / "checkpoints").items():
        shutil.copytree(bundle, folder / "assets" / "checkpoints" / name, ignore=SKIPPED)


def front_matter(readme: str) -> str:
    """The README's leading `---` block (sdk, app_file, ...), which makes a repository a Space."""
    match = re.match(r"---\n.*?\n---\n", readme, flags=re.DOTALL)
    if match is None or "app_file:" not in match.group(0):
        raise SpaceError("README.md does not start with the Space's front matter (--- sdk ... app_file ... ---)")
    return match.group(0)


def check_gradio_pin(front: str, requirements: str) -> None:
    """The Space installs gradio at the card's sdk_version before the requirements: the two must agree."""
    sdk = re.search(r"^sdk_version:\s*\"?([\w.]+)\"?\s*$", front, flags=re.MULTILINE)
    pin = re.search(r"^gradio==([\w.]+)$", requirements, flags=re.MULTILINE)
    if sdk is None or pin is None or sdk.group(1) != pin.group(1):
        raise SpaceError(f"README.md's sdk_version ({sdk.group(1) if sdk else 'missing'}) must equal the gradio pin "
                         f"in requirements.txt ({pin.group(1) if pin else 'missing'})")


def space_requirements(requirements: str) -> str:
    """requirements.txt with torch's pin turned into the CPU build's, from the CPU wheel index."""
    pin = re.compile(r"^torch==([\w.]+)$", flags=re.MULTILINE)
    if pin.search(requirements) is None:
        raise SpaceError("requirements.txt does not pin torch as torch==VERSION")
    head = ("# The Space's pip: torch's CPU build from its own index (PyPI's torch carries CUDA);\n"
            "# written by studio/space.py from the repository's requirements.txt.\n"
            f"--extra-index-url {CPU_TORCH_INDEX}\n")
    return head + pin.sub(r"torch==\1+cpu", requirements, count=1)


def needs_lfs(path: Path) -> bool:
    """What the Hub refuses to take as a plain git blob: over 10 MB, or binary (a NUL byte in the first
    8,000 bytes, git's own test)."""
    if path.stat().st_size > HUB_MAX_PLAIN_BYTES:
        return True
    with path.open("rb") as fh:
        return b"\0" in fh.read(8000)


def check_lfs(folder: Path, files: list[Path]) -> None:
    """Every file the Hub needs in LFS matches one of LFS_PATTERNS (git matches a slash-free pattern
    against the file name at any depth)."""
    bare = [f for f in files if needs_lfs(f) and not any(fnmatch.fnmatch(f.name, p) for p in LFS_PATTERNS)]
    if bare:
        names = ", ".join(str(f.relative_to(folder)) for f in bare)
        raise SpaceError(f"no LFS pattern in studio/space.py LFS_PATTERNS matches {names}: add one")


def upload(space: Space, space_id: str, token: str, private: bool = False) -> str:
    """Create the Space (SDK gradio) if it is new and make its files exactly the folder's; its URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        url = api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        api.upload_folder(repo_id=space_id, repo_type="space", folder_path=space.folder, delete_patterns="*",
                          commit_message="Deploy comagen studio")
    except Exception as exc:  # the hub client raises its HTTP library's own types, which change between versions
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise SpaceError(f"uploading to the Space {space_id} failed: {type(exc).__name__}: {detail}") from None
    return str(url)
