"""docs/configuration.md is generated from the Config dataclass and must be committed up to date."""

from __future__ import annotations

import re
import runpy
import tomllib

from lama_cleaner.config import Config, apply_mapping
from tests.support.server_process import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "gen_config_docs.py"


def test_configuration_doc_is_up_to_date():
    render = runpy.run_path(str(SCRIPT))["render"]
    committed = (REPO_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == render(), "docs/configuration.md is stale: run `python scripts/gen_config_docs.py`"


def test_every_config_field_is_documented():
    committed = (REPO_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    for name in Config.__dataclass_fields__:
        assert f"| `{name}` |" in committed, name


def test_the_documented_example_file_loads():
    committed = (REPO_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    example = re.search(r"```toml\n(.*?)```", committed, re.S).group(1)
    config = Config()
    apply_mapping(config, tomllib.loads(example))
    assert config.model == "cv2" and config.distributed.local_nodes == 2
    assert config.distributed.retry["inpaint"].max_attempts == 2
    assert config.extra == {"my_plugin": {"greeting": "hello"}}
