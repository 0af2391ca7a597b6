"""What ships: the MIT license pyproject.toml names, in the installed package and in the sdist."""
import importlib.metadata
import os
import subprocess
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def license_text():
    with open(os.path.join(ROOT, "LICENSE")) as f:
        return f.read()


def test_the_license_is_mit_as_pyproject_says():
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        assert 'license = { text = "MIT" }' in f.read()
    assert license_text().startswith("MIT License\n")


def test_the_installed_package_carries_the_license():
    dist = importlib.metadata.distribution("fastnet")
    shipped = [f for f in dist.files or [] if os.path.basename(str(f)) == "LICENSE"]
    assert len(shipped) == 1 and shipped[0].read_text() == license_text()


def test_the_sdist_carries_the_license(tmp_path):
    code = f"from scikit_build_core.build import build_sdist; print(build_sdist({str(tmp_path)!r}))"
    name = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.split()[-1]
    with tarfile.open(tmp_path / name) as sdist:
        top = name[:-len(".tar.gz")]
        assert sdist.extractfile(f"{top}/LICENSE").read().decode() == license_text()
