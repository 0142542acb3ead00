#!/usr/bin/env bash
# Install hwseg and everything its tests need: Python packages from PyPI (torch is the
# CPU 2.13.0 wheel), Icarus Verilog from Debian as the second simulator, and tclsh (the
# deploy tests replay the Vivado Tcl with stand-ins).
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v iverilog >/dev/null 2>&1 || ! command -v tclsh >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then apt_get="apt-get"; else apt_get="sudo apt-get"; fi
    $apt_get update -qq
    DEBIAN_FRONTEND=noninteractive $apt_get install -y -qq iverilog tcl >/dev/null
fi
python3 -m pip install --quiet --disable-pip-version-check -e ".[test]"
echo "hwseg installed: $(command -v hwseg)"
