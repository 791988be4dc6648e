"""Mobile networks by MCC/MNC (ITU-T E.212), and how long an MNC is in a given country.

A cell identity string in P-Access-Network-Info puts MCC and MNC back to back without a
separator, so a 2-digit and a 3-digit MNC can only be told apart by the field lengths that follow,
or, where those leave both readings open, by which network exists. The table covers Indonesia
(MCC 510) as ITU lists it, its neighbours' default MNC length, and a few 3-digit-MNC networks.
"""

from __future__ import annotations

# (MCC, MNC) -> network name. The MNC is kept exactly as assigned (length matters).
NETWORKS: dict[tuple[str, str], str] = {
    # Indonesia
    ("510", "00"): "PSN (satellite)",
    ("510", "01"): "Indosat Ooredoo Hutchison",
    ("510", "03"): "StarOne (Indosat CDMA, closed)",
    ("510", "07"): "TelkomFlexi (closed)",
    ("510", "08"): "XL Axiata (AXIS)",
    ("510", "09"): "Smartfren",
    ("510", "10"): "Telkomsel",
    ("510", "11"): "XL Axiata",
    ("510", "20"): "TelkomMobile (Telkomsel)",
    ("510", "21"): "Indosat Ooredoo Hutchison (IM3)",
    ("510", "27"): "Net1 Indonesia (Ceria)",
    ("510", "28"): "Smartfren (Fren)",
    ("510", "88"): "BOLT (Internux, closed)",
    ("510", "89"): "Indosat Ooredoo Hutchison (Three/H3I)",
    ("510", "99"): "Esia (Bakrie Telecom, closed)",
    # Roaming callers from neighbours that reach 112 through an Indonesian network
    ("502", "12"): "Maxis",
    ("502", "13"): "CelcomDigi",
    ("502", "19"): "CelcomDigi",
    ("525", "01"): "Singtel",
    ("525", "03"): "M1",
    ("525", "05"): "StarHub",
    ("514", "01"): "Telkomcel",
    ("514", "02"): "Timor Telecom",
    ("505", "01"): "Telstra",
    ("505", "02"): "Optus",
    # 3-digit MNC countries
    ("310", "260"): "T-Mobile US",
    ("310", "410"): "AT&T Mobility",
    ("311", "480"): "Verizon Wireless",
    ("405", "854"): "Jio",
    ("405", "857"): "Jio",
}

# Countries where every MNC has the same length. Most of the world uses 2 digits; North America
# and India (405) use 3. Used only when the cell identity's length allows both.
_THREE_DIGIT_MCCS = frozenset(
    {"302", "310", "311", "312", "313", "314", "315", "316", "334", "338", "342", "344", "346",
     "348", "354", "356", "358", "360", "365", "376", "405", "708", "722", "732"}
)  # fmt: skip


def network_name(mcc: str, mnc: str) -> str | None:
    """The operator's name, or None when the pair is not in the table."""
    return NETWORKS.get((mcc, mnc))


def is_known(mcc: str, mnc: str) -> bool:
    return (mcc, mnc) in NETWORKS


def default_mnc_length(mcc: str) -> int:
    """The usual MNC length in that country: 3 in North America and India, else 2."""
    return 3 if mcc in _THREE_DIGIT_MCCS else 2


def choose_mnc_length(mcc: str, digits: str) -> int:
    """2 or 3 for an MNC read from the front of ``digits`` when both are possible.

    A known network decides; when both or neither readings are known networks the country's
    usual length does.
    """
    two = is_known(mcc, digits[:2])
    three = len(digits) >= 3 and is_known(mcc, digits[:3])
    if two and not three:
        return 2
    if three and not two:
        return 3
    return default_mnc_length(mcc)
