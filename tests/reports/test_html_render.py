"""index.html renders in headless Chromium (Debian package `chromium`) and is not blank."""
import shutil
import subprocess

import matplotlib.image as mpimg
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
def test_index_renders(small_report, tmp_path):
    index = small_report
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000",
                    index.resolve().as_uri()], capture_output=True, timeout=60, check=True)
    img = mpimg.imread(shot)[..., :3]
    assert img.shape[:2] == (2000, 1200)
    assert img.var() > 1e-3  # text, tables and figures, not an empty page
    rows_with_ink = (img.min(axis=(1, 2)) < 0.5).mean()
    assert rows_with_ink > 0.2, f"only {rows_with_ink:.0%} of the screenshot's rows hold dark pixels"
