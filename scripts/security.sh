#!/usr/bin/env bash
# Security checks (issue 16 item 3), run by scripts/test.sh before pytest:
# - bandit on src/: every finding is fixed or justified where it stands (`# nosec BXXX`
#   beside the reason); any new finding fails;
# - the secret scan of the repository's tracked files (tests/secretscan.py; the scan of what
#   the test run wrote runs at the end of pytest, from tests/conftest.py);
# - pip-audit of the installed dependencies, when its vulnerability database can be reached:
#   a known vulnerability fails; an unreachable database is said and skipped, never a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

echo "== bandit" >&2
# bandit warns about a `# nosec` on each line of a multi-line statement; only findings count
bandit -q -r src 2> >(grep -v "nosec encountered" >&2)

echo "== secret scan (repository)" >&2
python -m tests.secretscan --repo

echo "== pip-audit" >&2
report=$(mktemp)
trap 'rm -f "$report"' EXIT
if ! timeout 300 pip-audit --skip-editable --progress-spinner off -f json -o "$report" 2>"$report.err"; then
    if grep -q '"vulns": \[{' "$report" 2>/dev/null; then
        cat "$report.err" >&2
        python - "$report" <<'PY'
import json, sys
for dep in json.load(open(sys.argv[1]))["dependencies"]:
    for vuln in dep.get("vulns", []):
        print(f"pip-audit: {dep['name']} {dep.get('version')}: {vuln['id']} (fixed in {', '.join(vuln.get('fix_versions', [])) or 'no release yet'})", file=sys.stderr)
PY
        rm -f "$report.err"
        exit 1
    fi
    echo "pip-audit: SKIPPED, the vulnerability database could not be reached: $(tail -1 "$report.err")" >&2
    rm -f "$report.err"
    exit 0
fi
rm -f "$report.err"
python - "$report" <<'PY'
import json, sys
deps = json.load(open(sys.argv[1]))["dependencies"]
audited = [d for d in deps if "skip_reason" not in d]
if not audited:
    print(f"pip-audit: SKIPPED, the vulnerability database could not be reached "
          f"(none of {len(deps)} dependencies could be looked up)", file=sys.stderr)
else:
    print(f"pip-audit: no known vulnerability in {len(audited)} dependencies "
          f"({len(deps) - len(audited)} could not be looked up)", file=sys.stderr)
PY
