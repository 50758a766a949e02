#!/usr/bin/env bash
# Kaldi-style option parsing: for every variable already defined by the caller, `--name value` or `--name=value`
# on the command line overrides it (dashes in the name map to underscores). `--help` prints the caller's $help_message.
# Source it after setting defaults:  . utils/parse_options.sh
while true; do
  [ -z "${1:-}" ] && break
  case "$1" in
    --help|-h)
      echo "${help_message:-no help message}" >&2
      exit 0 ;;
    --*=*)
      name=$(echo "${1%%=*}" | sed -e 's/^--//' -e 's/-/_/g')
      value="${1#*=}"
      shift ;;
    --*)
      name=$(echo "$1" | sed -e 's/^--//' -e 's/-/_/g')
      if [ $# -lt 2 ]; then echo "$0: option --${name} needs a value" >&2; exit 1; fi
      value="$2"
      shift 2 ;;
    *) break ;;
  esac
  if ! declare -p "${name}" >/dev/null 2>&1; then
    echo "$0: invalid option --${name} (see --help)" >&2
    exit 1
  fi
  printf -v "${name}" '%s' "${value}"
done
true
