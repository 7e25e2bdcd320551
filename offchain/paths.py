"""Where the project's own files are: the repository root and the shipped market history."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# Daily BTC and ETH history shipped with the project (data/README.md says where it comes from)
DATA_DIR = REPO_ROOT / "data"
