import json
import socket

from slocal.bench.machine import code_version, cpu_model, machine_info


def test_cpu_model_from_cpuinfo(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text(
        "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Test CPU @ 3.0GHz\n\nprocessor\t: 1\nmodel name\t: "
        "Test CPU @ 3.0GHz\n"
    )
    assert cpu_model(f) == "Test CPU @ 3.0GHz"


def test_machine_info_has_versions_and_no_hostname():
    info = machine_info()
    assert info["cores"] >= 1 and info["versions"]["numpy"] and info["versions"]["poselib"]
    assert info["date"].endswith("Z")
    assert socket.gethostname() not in json.dumps(info)


def test_code_version_names_the_commit_of_this_checkout():
    code = code_version()
    assert code["commit"] is not None and len(code["commit"]) == 40
    assert int(code["commit"], 16) >= 0
    assert isinstance(code["dirty"], bool)


def test_code_version_outside_a_checkout_says_unknown(tmp_path):
    code = code_version(tmp_path)
    assert code["commit"] is None and code["dirty"] is None
    assert "package" in code
