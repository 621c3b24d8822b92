#!/usr/bin/env bash
# Vendor htmx into static/vendor/ from the npm registry's published tarball.
#
# The tarball's integrity is pinned here and must also be what the registry reports,
# so a re-run either writes the same files again or fails.
#
# Usage: scripts/vendor-htmx.sh
set -euo pipefail

readonly VERSION="2.0.11"
readonly EXPECTED_INTEGRITY="sha512-Thx/WtpeOQqSrqBCw/A1cwGJGg4UrVa3+sW0GmrM3p4gJgO89ecH4qtbnyzDDWFvBTqjnIMCgELTNt636dtamA=="

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
vendor_dir="$repo_root/static/vendor"
work_dir="$(mktemp -d)"
trap 'rm -rf "$work_dir"' EXIT

registry_integrity="$(npm view "htmx.org@$VERSION" dist.integrity)"
if [[ "$registry_integrity" != "$EXPECTED_INTEGRITY" ]]; then
    echo "registry reports $registry_integrity for htmx.org@$VERSION, expected $EXPECTED_INTEGRITY" >&2
    exit 1
fi

(cd "$work_dir" && npm pack --silent "htmx.org@$VERSION" >/dev/null)
tarball="$work_dir/htmx.org-$VERSION.tgz"

# npm's integrity string is "sha512-" followed by the base64 of the raw digest.
tarball_integrity="sha512-$(python3 -c '
import base64, hashlib, sys
print(base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())
' "$tarball")"
if [[ "$tarball_integrity" != "$EXPECTED_INTEGRITY" ]]; then
    echo "downloaded tarball has $tarball_integrity, expected $EXPECTED_INTEGRITY" >&2
    exit 1
fi

tar -xzf "$tarball" -C "$work_dir" package/dist/htmx.min.js package/LICENSE
mkdir -p "$vendor_dir"
cp "$work_dir/package/dist/htmx.min.js" "$vendor_dir/htmx-$VERSION.min.js"
cp "$work_dir/package/LICENSE" "$vendor_dir/htmx.LICENSE"

echo "vendored htmx $VERSION:"
(cd "$vendor_dir" && sha256sum "htmx-$VERSION.min.js" htmx.LICENSE)
