"""Assemble the app as a Hugging Face Space and, given a token, upload it.

    python scripts/deploy_space.py OWNER/NAME [--token TOKEN] [--out DIR] [--private] [--json]

The token is --token or HF_TOKEN (a write token); without one the folder is only assembled, and the
script says how to upload it. What goes into the folder, and why: studio/space.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

from comagen.cli import run_for_user
from studio.space import SpaceError, assemble, upload


def deploy(args: argparse.Namespace) -> dict:
    if args.space_id.count("/") != 1:
        raise SpaceError(f"{args.space_id!r} is not a Space id: give OWNER/NAME")
    out = args.out or Path(tempfile.mkdtemp(prefix="comagen-space-"))
    space = assemble(out)
    print(f"assembled {len(space.files)} files, {space.megabytes:.1f} MB, in {space.folder}")
    token = args.token or os.environ.get("HF_TOKEN")
    if not token:
        print(f"no token, so nothing was uploaded. To upload, run this again with HF_TOKEN set to a write token "
              f"(huggingface.co/settings/tokens) or with --token, or push {space.folder} to the Space "
              f"{args.space_id} with git and git-lfs (its .gitattributes stores the binaries with LFS).")
        return {"folder": str(space.folder), "files": len(space.files), "uploaded": None}
    url = upload(space, args.space_id, token, private=args.private)
    print(f"uploaded to {url}: the Space installs packages.txt and requirements.txt, then runs app.py")
    return {"folder": str(space.folder), "files": len(space.files), "uploaded": url}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("space_id", help="the Space, OWNER/NAME (created if new, SDK gradio)")
    parser.add_argument("--token", help="a Hugging Face write token (default: $HF_TOKEN)")
    parser.add_argument("--out", type=Path, help="folder to assemble into, new or empty (default: a temp folder)")
    parser.add_argument("--private", action="store_true", help="create the Space private")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args()
    return run_for_user(lambda: deploy(args), as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
