import pandas as pd
import pytest

from segad.config import DatasetConfig
from segad.ingestion.demo import DemoConfig
from segad.pipelines.ingestion.nodes import ingest
from tests.conftest import TINY_DEMO


def test_ingest_writes_the_demo_then_indexes_it(tmp_path):
    root = tmp_path / "demo"
    demo = DemoConfig(
        **{
            k: getattr(TINY_DEMO, k)
            for k in ("n_train_good", "n_train_bad", "n_test_good", "n_test_bad", "n_test_unseen", "image_size")
        }
    )
    index, problems = ingest(DatasetConfig(layout="demo", root=str(root), category=None, on_bad_image="fail"), demo)
    assert (root / "segmentation.png").is_file()
    assert len(index) == 33 and problems.empty
    assert index.groupby("label").size().to_dict() == {0: 18, 1: 15}
    assert isinstance(index, pd.DataFrame) and index.image_id.is_unique


def test_ingest_with_the_demo_layout_never_touches_a_folder_of_user_files(tmp_path):
    """A user who forgets dataset.layout (default demo) gets an error, and keeps every file."""
    from segad.storage.files import NotOwnedError

    user = tmp_path / "my_parts"
    (user / "train" / "good").mkdir(parents=True)
    (user / "train" / "good" / "0001.png").write_bytes(b"not really a png, but mine")
    (user / "README").write_text("my notes")
    with pytest.raises(NotOwnedError, match="my_parts"):
        ingest(DatasetConfig(layout="demo", root=str(user), category=None, on_bad_image="fail"), DemoConfig())
    assert (user / "train" / "good" / "0001.png").read_bytes() == b"not really a png, but mine"
    assert (user / "README").read_text() == "my notes"
