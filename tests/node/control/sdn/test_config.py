"""A standalone key manager with an [sdn] section: its RESTCONF server, interfaces named by their
instruments' *IDN?, and configuration errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

import hil_fixtures.sims
from node.control.sdn.config import parse_sdn
from node.keymanager.certs import make_pki
from node.keymanager.config import ApiConfig, load_config
from tests.node.control.sdn.restconf_client import MODULE, RestconfClient, TreeWalker, data_model
from tests.node.keymanager.conftest import KmThread, write_pair_configs

SIMS = Path(hil_fixtures.sims.__file__).parent
SDN = f"""
[sdn]
port = 0
controllers = ["SDN_CONTROLLER"]
location = "lab 2, rack 4"
[[sdn.interfaces]]
id = 7
link = "L1"
role = "TRANSMITTER"
idn_resource = "TCPIP0::192.168.0.21::hislip0::INSTR"
visa_library = "{SIMS / "m8195a.yaml"}@sim"
device = "switch-1"
port = 3
"""


def test_key_manager_with_an_sdn_section_serves_restconf_with_its_instruments_models(tmp_path):
    pki = tmp_path / "pki"
    make_pki(pki, ["KME_A", "KME_B"], ["SAE_A", "SAE_B", "SAE_C", "SAE_D", "SDN_CONTROLLER"])
    files = write_pair_configs(tmp_path, pki)
    files["a"].write_text(files["a"].read_text().replace("[[peers]]", SDN + "\n[[peers]]", 1))
    km = KmThread(files["a"])
    try:
        url = km.km.endpoints()["restconf_url"]
        c = RestconfClient.from_url(
            url, str(pki / "SDN_CONTROLLER.pem"), str(pki / "SDN_CONTROLLER.key"), str(pki / "ca.pem")
        )
        c.discover()
        tree = TreeWalker(c, data_model()).walk()
        (iface,) = tree["qkd_interfaces"]["qkd_interface"]
        assert iface["qkdi_id"] == 7 and iface["qkdi_model"] == "Keysight Technologies M8195A"
        assert iface["qkdi_att_point"] == {"device": "switch-1", "port": 3}
        assert tree["qkdn_location_id"] == "lab 2, rack 4"
        (link,) = tree["qkd_links"]["qkd_link"]
        assert link["qkdl_local"]["qkdi_id"] == 7 and link["qkdl_type"] == "etsi-qkd-node-types:PHYS"
        cert, key, ca = (str(pki / f) for f in ("SAE_A.pem", "SAE_A.key", "ca.pem"))
        status, _doc = RestconfClient.from_url(url, cert, key, ca).json("GET", f"/restconf/data/{MODULE}:qkd_node")
        assert status == 403
        c.close()
    finally:
        km.stop()


API = ApiConfig(host="127.0.0.1", port=0, cert="c.pem", key="k.pem", ca="ca.pem")


@pytest.mark.parametrize(
    "table, key",
    [
        ({"port": 70000}, "sdn.port"),
        ({"controllers": []}, "sdn.controllers"),
        ({"colour": "red"}, "sdn.colour"),
        ({"interfaces": [{"id": 1, "link": "L9", "model": "x"}]}, "sdn.interfaces[0].link"),
        ({"interfaces": [{"id": 1, "link": "L1", "model": "x", "role": "SENDER"}]}, "sdn.interfaces[0].role"),
        ({"interfaces": [{"id": 1, "link": "L1", "model": "x", "technology": "QKD"}]}, "sdn.interfaces[0].technology"),
        ({"interfaces": [{"id": 1, "link": "L1"}]}, "sdn.interfaces[0].model"),
        (
            {"interfaces": [{"id": 1, "link": "L1", "model": "x"}, {"id": 1, "link": "L1", "model": "y"}]},
            "sdn.interfaces[1].id",
        ),
        (
            {"interfaces": [{"id": 1, "link": "L1", "model": "x", "wavelength_range": "blue"}]},
            "sdn.interfaces[0].wavelength_range",
        ),
    ],
)
def test_bad_sdn_configuration_names_the_key(table, key):
    with pytest.raises(ValueError, match=key.replace("[", r"\[").replace("]", r"\]")):
        parse_sdn(table, API, {"L1"}, str)


def test_sdn_section_is_optional_and_parsed_by_the_key_manager_config(tmp_path):
    pki = tmp_path / "pki"
    make_pki(pki, ["KME_A", "KME_B"], ["SAE_A"])
    files = write_pair_configs(tmp_path, pki)
    assert load_config(files["a"]).sdn is None
    files["a"].write_text(files["a"].read_text().replace("[[peers]]", "[sdn]\nport = 9\n[[peers]]", 1))
    cfg = load_config(files["a"])
    assert cfg.sdn.port == 9 and cfg.sdn.controllers == ("SDN_CONTROLLER",) and cfg.sdn.cert == cfg.api.cert


def test_key_manager_with_an_sdn_section_refuses_an_entry_point_that_would_not_serve_it(tmp_path):
    """The KM does not import the SDN agent: whoever starts it passes the RESTCONF starter, and a
    configuration with [sdn] started without one is refused rather than running silently without SDN."""
    from node.control.sdn.service import services_for
    from node.keymanager.daemon import KeyManager
    from node.keymanager.daemon import main as km_module_main

    pki = tmp_path / "pki"
    make_pki(pki, ["KME_A", "KME_B"], ["SAE_A"])
    files = write_pair_configs(tmp_path, pki)
    files["a"].write_text(files["a"].read_text().replace("[[peers]]", "[sdn]\nport = 9\n[[peers]]", 1))
    cfg = load_config(files["a"])
    with pytest.raises(ValueError, match=r"\[sdn\].*qkdnode km"):
        KeyManager(cfg)
    assert set(services_for(cfg)) == {"restconf"}
    assert services_for(load_config(files["b"])) == {}
    assert km_module_main([str(files["a"])]) == 2
