"""Stand-in for the get-pip.py that ansible-test downloads to bootstrap pip in its venvs.

ansible-test fetches https://ci-files.testing.ansible.com/ansible-test/get-pip-<ver>.py, a host
this machine cannot reach (only package registries are reachable), and reads it from
~/.ansible/test/cache/get_pip_<ver>.py when it is there. scripts/sanity.sh copies this file to
those names: it installs the interpreter's bundled pip (ensurepip, offline) and then lets that
pip install the exact packages ansible-test asked for (pip==<ver> ...) from the package index.
The get-pip-only options --no-setuptools / --no-wheel mean "do not add them" and are dropped.
Runs on every Python ansible-test targets, 2.7 included.
"""

import subprocess
import sys


def main():
    args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
    subprocess.check_call([sys.executable, "-m", "pip", "install", *args])


if __name__ == "__main__":
    main()
