# shellcheck shell=bash
# Sourced by local/*.sh after db.sh: require_db VAR... exits 1, naming the first db.sh variable VAR that is empty.
#   . local/require_db.sh; require_db MYST LIBRISPEECH

require_db() {
  local var
  for var in "$@"; do
    if [ -z "${!var:-}" ]; then
      echo "$0: set ${var} in db.sh (see README.md)" >&2; exit 1
    fi
  done
}
