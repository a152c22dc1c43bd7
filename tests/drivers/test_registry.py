"""Driver registry: *IDN? matching and opening drivers from `[instruments.*]` config tables."""

from __future__ import annotations

import pytest

from drivers.laser import ThorlabsITC4001
from drivers.registry import DRIVERS, match_idn, open_instrument, open_instruments
from hil_fixtures.emulators.itc4001 import ITC4001
from hil_fixtures.emulators.mbx import MBX


@pytest.mark.parametrize(
    "idn,name",
    [
        ("Thorlabs,ITC4001,M00443953,1.8.0", "itc4001"),
        ("Agilent Technologies,33522B,MY1,4.00", "keysight33500b"),
        ("Keysight Technologies,33511B,MY1,4.00", "keysight33500b"),
        ("Keysight Technologies,M8195A,MY1,4.1", "m8195a"),
        ("THORLABS,MBX,M0,1.9.4", "mbx"),
        ("Agilent Technologies,8163B,DE1,V5.25", "keysight8157xa"),
        ("ID Quantique,ID1000,5,1.9", "id1000"),
    ],
)
def test_idn_replies_match_their_driver(idn, name):
    assert [d.name for d in match_idn(idn)] == [name]


def test_unknown_idn_matches_nothing():
    assert match_idn("ACME,Frobnicator,1,1") == [] and match_idn("") == []


def test_every_registered_driver_class_imports_without_vendor_libraries():
    for info in DRIVERS:
        assert isinstance(info.load(), type)


def test_open_instruments_from_config_tables(emulate):
    laser_server = emulate(ITC4001())
    mbx_server = emulate(MBX())
    section = {
        "laser": {"driver": "itc4001", "resource": laser_server.visa_resource, "max_current_a": 0.08, "timeout_s": 0.5},
        "bias": {"driver": "mbx", "resource": mbx_server.serial_url, "timeout_s": 0.5},
    }
    opened = open_instruments(section)
    try:
        assert isinstance(opened["laser"], ThorlabsITC4001) and opened["laser"].current_range_a == (0.0, 0.08)
        assert opened["bias"].bias_mode == 0
    finally:
        for inst in opened.values():
            inst.close()


@pytest.mark.parametrize(
    "table,match",
    [
        ({"driver": "laser9000"}, r"\[instruments.x\] driver must be one of"),
        ({"driver": "itc4001"}, r"\[instruments.x\] resource must be"),
        ({"driver": "itc4001", "resource": "USB0::1::INSTR", "max_curent_a": 1}, r"unknown keys \['max_curent_a'\]"),
        ({"driver": "swabian", "channels": [1], "serial": "x", "colour": 1}, r"unknown keys \['colour'\]"),
    ],
)
def test_bad_config_tables_name_the_key(table, match):
    with pytest.raises(ValueError, match=match):
        open_instrument("x", table)


def test_drivers_have_every_member_of_their_role_protocol():
    from drivers.attenuator import Keysight8157xA, VariableAttenuator
    from drivers.bias import BiasController, ThorlabsMBX
    from drivers.laser import LaserController

    for cls, proto in (
        (ThorlabsITC4001, LaserController),
        (ThorlabsMBX, BiasController),
        (Keysight8157xA, VariableAttenuator),
    ):
        members = {n for n in vars(proto) if not n.startswith("_")} | set(proto.__annotations__)
        assert members <= set(dir(cls)), members - set(dir(cls))


def test_channel_maps_from_toml_have_integer_keys(monkeypatch):
    import sys

    from hil_fixtures.vendor import swabian

    monkeypatch.setitem(sys.modules, "TimeTagger", swabian.make_module())
    tagger = open_instrument("tagger", {"driver": "swabian", "channels": [1, 2], "trigger_levels_v": {"1": 0.25}})
    try:
        assert sys.modules["TimeTagger"].taggers[-1].levels == {1: 0.25}
    finally:
        tagger.close()
