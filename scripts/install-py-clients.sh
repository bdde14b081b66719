#!/usr/bin/env bash
# The independent HTTP clients the endpoint tests drive `streamer serve`
# with: OpenAI's and Ollama's own Python packages from PyPI, pinned, in a
# private venv (nothing installed system-wide). Idempotent.
set -euo pipefail
DEST="${STREAMER_PY_CLIENTS:-${XDG_CACHE_HOME:-$HOME/.cache}/streamer/py-clients}"
PINS=(openai==3.57.0 ollama==0.6.3 httpx==0.29.0)
STAMP="$DEST/.pins"
if [[ -x $DEST/bin/python && -f $STAMP && "$(cat "$STAMP")" == "${PINS[*]}" ]]; then
    echo "$DEST"
    exit 0
fi
python3 -m venv "$DEST" >&2
"$DEST/bin/pip" install --quiet --disable-pip-version-check "${PINS[@]}" >&2
echo "${PINS[*]}" > "$STAMP"
echo "$DEST"
