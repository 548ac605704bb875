#!/usr/bin/env bash
# Golden tests of the CLI contract (docs/cli.md). Each tests/cli/cases/*.t file holds transcripts:
#   $ bpfvm ARGS...            a command (run by bash in tests/cli/data, `bpfvm` = the binary under test)
#   expected output lines      stdout and stderr, in order
#   [exit N]                   the expected exit code
# Usage: run_golden.sh BPFVM_BINARY CLI_TEST_DIR [--update]
# $PROGS names the directory of compiled test objects (build/progs); default: beside the binary.
# $SCRATCH is an empty directory on tmpfs (pinned maps live there; /dev/shm, else $XDG_RUNTIME_DIR),
# also the pin root ($BPFVM_PIN_ROOT); it is printed as $SCRATCH and removed at the end.
set -u
BIN=$(readlink -f "$1")
DIR=$(readlink -f "$2")
UPDATE=${3:-}
pass=0; fail=0
export PROGS=${PROGS:-$(dirname "$BIN")/progs}
export BPFVM_SHARED=${BPFVM_SHARED:-$(readlink -f "$DIR/../../../shared" 2>/dev/null || true)}
tmpfs_dir=/dev/shm
[ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] || tmpfs_dir=${XDG_RUNTIME_DIR:-/tmp}
export SCRATCH=$(mktemp -d "$tmpfs_dir/bpfvm-golden.XXXXXX")
export BPFVM_PIN_ROOT=$SCRATCH
trap 'rm -rf "$SCRATCH"' EXIT
for t in "$DIR"/cases/*.t; do
  actual=$(mktemp)
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in
      '$ bpfvm'*)
        cmd=${line#'$ bpfvm'}
        echo "$line" >> "$actual"
        # Paths of compiled objects differ between checkouts: print them as $PROGS.
        (cd "$DIR/data" && eval "\"$BIN\"$cmd" 2>&1; echo "[exit $?]") | sed -e "s#$PROGS#\$PROGS#g" -e "s#$SCRATCH#\$SCRATCH#g" >> "$actual"
        ;;
      '#'*) echo "$line" >> "$actual" ;;
      '') echo "" >> "$actual" ;;
    esac
  done < <(grep -E '^(\$ bpfvm|#|$)' "$t")
  # Compare transcripts
  if diff -u "$t" "$actual" > "$actual.diff"; then
    pass=$((pass+1))
  else
    if [ "$UPDATE" = "--update" ]; then cp "$actual" "$t"; echo "updated $(basename "$t")"; else
      fail=$((fail+1)); echo "FAIL: $(basename "$t")"; cat "$actual.diff"; fi
  fi
  rm -f "$actual" "$actual.diff"
done
echo "cli golden: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
