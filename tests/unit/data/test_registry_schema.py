"""The registry entry format: the published JSON schema agrees with the Python checks and the adapters'
declared keys, every entry conforms, `medseg datasets --check` gives ok or one line, and the README's
example and tables are current."""

from __future__ import annotations

import copy
import re
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from helpers import REPO
from medseg.cli import main
from medseg.data.registry import ADAPTER_KINDS, REQUIRED, USES, DatasetSpec, parse_entry
from medseg.data.registry_schema import check_entry_file, fields_markdown, load_schema, schema_problem
from medseg.errors import MedsegError

ENTRIES = sorted((REPO / "medseg/data/registry").glob("*.yaml")) + sorted(
    (Path(__file__).parent / "registry").glob("*.yaml"))
SCHEMA = load_schema()
README = (REPO / "README.md").read_text()
BASE = yaml.safe_load((REPO / "medseg/data/registry/mri_chaos.yaml").read_text())


def _settings_def(kind: str) -> dict[str, Any]:
    return SCHEMA["$defs"][kind]


def _readme_example() -> str:
    section = README.split("### Custom dataset entry", 1)[1]
    return re.search(r"```yaml\n(.*?)```", section, re.S).group(1)


def test_schema_is_a_valid_json_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)


def test_schema_top_level_matches_the_code() -> None:
    assert SCHEMA["required"] == list(REQUIRED)
    assert list(SCHEMA["properties"]) == list(DatasetSpec.__dataclass_fields__)
    assert SCHEMA["properties"]["adapter"]["enum"] == list(ADAPTER_KINDS)
    assert SCHEMA["properties"]["use"]["enum"] == list(USES)
    assert SCHEMA["additionalProperties"] is False
    conditions = [rule["if"]["properties"]["adapter"]["const"] for rule in SCHEMA["allOf"]]
    assert conditions == list(ADAPTER_KINDS)


@pytest.mark.parametrize("kind", ADAPTER_KINDS)
def test_schema_settings_are_the_keys_the_adapter_declares(kind: str) -> None:
    adapter = import_module(f"medseg.data.adapters.{kind}")
    definition = _settings_def(kind)
    assert set(definition["properties"]) == {*adapter.REQUIRED_SETTINGS, *adapter.OPTIONAL_SETTINGS}
    required = definition.get("required") or definition["else"]["required"]  # paired_volumes: unless msd
    assert required == list(adapter.REQUIRED_SETTINGS)
    assert definition["additionalProperties"] is False


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda p: f"{p.parent.parent.name}/{p.stem}")
def test_every_entry_conforms_to_the_schema_and_checks_ok(entry: Path) -> None:
    assert schema_problem(yaml.safe_load(entry.read_text())) is None
    assert check_entry_file(entry).alias == entry.stem


def _mutated(change: str) -> dict[str, Any]:
    entry = copy.deepcopy(BASE)
    key, _, value = change.partition("=")
    if value == "<delete>":
        del entry[key]
    else:
        node, *path = key.split(".")
        target = entry if not path else entry[node]
        target[path[-1] if path else node] = yaml.safe_load(value)
    return entry


BAD = [
    "citation=<delete>", "settings=<delete>", "licence=12", "adapter=nifti_pairs", "use=training",
    "slice_axis=3", "synthetic=yes please", "mask_values={treshold: 0}", "mask_values={ranges: 5}",
    "patient_id=(unclosed", "alias=../etc", "colour=red", "labels=[background, liver]",
    "settings.mask=dicom", "settings.masks=png_stack", "settings.label={regex: a}",
    "settings.series_list={file: x.csv, column: T2, regex: a, replace: b}", "settings.exclude=._*",
]


@pytest.mark.parametrize("change", BAD)
def test_schema_and_python_checks_both_refuse_bad_entries(change: str, tmp_path: Path) -> None:
    entry = _mutated(change)
    assert schema_problem(entry) is not None
    with pytest.raises(MedsegError, match=re.escape(str(tmp_path / "mri_chaos.yaml"))):
        parse_entry(tmp_path / "mri_chaos.yaml", entry)


def test_schema_catches_what_only_it_checks() -> None:
    assert "labels.1" in schema_problem(_mutated("labels={0: background, 1: 5}"))
    assert "mask_values.map.1" in schema_problem(_mutated("mask_values={map: {0: 0, 1: 300}}"))


def test_missing_fields_are_named_with_what_each_is_for(tmp_path: Path) -> None:
    entry = {k: v for k, v in BASE.items() if k not in ("citation", "licence", "download", "layout")}
    with pytest.raises(MedsegError) as caught:
        parse_entry(tmp_path / "mri_chaos.yaml", entry)
    problem = caught.value.problem
    for key in ("citation", "licence", "download", "layout"):
        assert f"{key} ({SCHEMA['properties'][key]['title']})" in problem
    assert "Custom dataset entry" in problem


def _check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["datasets", "--check", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def test_check_prints_ok_without_a_params_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # no params.yaml here: --check needs none
    entry = tmp_path / "ct_liver_inhouse.yaml"
    entry.write_text(_readme_example())
    assert _check(entry, capsys) == (0, "ok: ct_liver_inhouse (paired_volumes)\n", "")


@pytest.mark.parametrize(("content", "problem"), [
    ("alias: x\nname: [unclosed\n", "not valid YAML"),
    (yaml.safe_dump({**BASE, "alias": "x", "slice_axis": 5}), "slice_axis must be 0, 1 or 2, not 5"),
    (yaml.safe_dump({**BASE, "alias": "x", "labels": {0: "background", 1: 7}}), "labels.1: 7 is not of type"),
    (yaml.safe_dump({**BASE, "alias": "y"}), "alias 'y' must equal the file name (x)"),
])
def test_check_bad_entry_is_one_line_naming_the_file(content: str, problem: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    entry = tmp_path / "x.yaml"
    entry.write_text(content)
    code, out, err = _check(entry, capsys)
    assert code == 2 and out == ""
    assert err.splitlines() == [err.strip()] and err.startswith(f"medseg datasets: error: {entry}: ")
    assert problem in err


def test_check_refuses_a_built_in_alias_elsewhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy_of_builtin = tmp_path / "mri_chaos.yaml"
    copy_of_builtin.write_text(yaml.safe_dump(BASE))
    code, _, err = _check(copy_of_builtin, capsys)
    assert code == 2 and "already taken by a built-in dataset" in err


def test_fields_option_prints_the_generated_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets", "--fields"]) == 0
    assert capsys.readouterr().out == fields_markdown()


def test_fields_tables_name_every_field_and_setting() -> None:
    text = fields_markdown()
    for key in DatasetSpec.__dataclass_fields__:
        assert f"| `{key}` | {'yes' if key in REQUIRED else 'no'} |" in text
    for kind in ADAPTER_KINDS:
        adapter = import_module(f"medseg.data.adapters.{kind}")
        table = text.split(f"`{kind}` settings:", 1)[1].split("settings:", 1)[0]
        assert [row.split("`")[1] for row in table.splitlines() if row.startswith("| `")] == [
            *adapter.REQUIRED_SETTINGS, *adapter.OPTIONAL_SETTINGS]


def test_readme_tables_are_the_generated_ones() -> None:
    """README "Custom dataset entry": replace the block between the markers with `medseg datasets --fields`."""
    block = README.split("<!-- registry-fields: begin", 1)[1].split("-->\n", 1)[1]
    assert block.split("<!-- registry-fields: end -->", 1)[0] == fields_markdown()
