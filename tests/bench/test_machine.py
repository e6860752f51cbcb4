import json
import socket

from slocal.bench.machine import cpu_model, machine_info


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
