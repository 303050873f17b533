"""``python -m compression.studio.upload_check model|dataset PATH``: the engine's check of an upload.

Runs in its own process (it imports TensorFlow through the engine) and prints one JSON line:
``{"ok": true, "info": ...}`` or ``{"ok": false, "error": "one line"}``. The dashboard calls
it through ``compression.studio.uploads.deep_check`` so the Streamlit process stays TensorFlow-free.
"""

from __future__ import annotations

import json
import sys

import compression  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)

from compression.errors import UserError

CANDIDATES = {
    "model": ("compression.engine.models", ("load_model", "inspect_model_file")),  # a full load catches damaged weights
    "dataset": ("compression.inputs.data", ("validate_npz", "load_npz")),
}


def check(kind: str, path: str) -> dict:
    module_name, names = CANDIDATES[kind]
    try:
        module = __import__(module_name, fromlist=["_"])
    except ImportError:
        return {"ok": True, "info": None, "skipped": f"{module_name} is not available"}
    for name in names:
        fn = getattr(module, name, None)
        if callable(fn):
            try:
                info = fn(path)
            except UserError as e:
                return {"ok": False, "error": str(e).splitlines()[0]}
            except Exception as e:  # anything else a hostile file provokes is a refusal too
                first = str(e).splitlines()[0] if str(e) else ""
                return {"ok": False, "error": f"cannot be loaded ({type(e).__name__}{': ' + first[:200] if first else ''})"}
            try:
                json.dumps(info)
            except TypeError:
                info = None
            return {"ok": True, "info": info}
    return {"ok": True, "info": None, "skipped": f"{module_name} offers no check"}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in CANDIDATES:
        print(json.dumps({"ok": False, "error": "usage: python -m compression.studio.upload_check model|dataset PATH"}))
        return 2
    answer = check(argv[0], argv[1])
    print(json.dumps(answer))
    return 0 if answer["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
