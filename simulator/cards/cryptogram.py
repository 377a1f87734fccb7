"""EMV application cryptograms (ARQC, ARPC): what the chip computes and the issuer checks.

Both ends share the EMV algorithms (``pyemv``): the card, personalised with ICC master keys
derived from its issuer's master keys (IMK) and its PAN, signs the transaction data with an
*authorisation request cryptogram* (ARQC, tag ``9F26``) under a session key of its
application transaction counter (ATC, ``9F36``); the issuer derives the same keys, recomputes
the ARQC over the EMV data it received and answers with an *authorisation response
cryptogram* (ARPC) in its issuer authentication data (tag ``91``), which the chip checks in
its second GENERATE AC.

The cryptogram version (CVN) is the issuer's choice, here by card brand:

=============  =====================  =================================================
brand          CVN                    tag 91 (issuer authentication data)
=============  =====================  =================================================
MASTERCARD     Mastercard CVN 16      ARPC (8 bytes, method 1) ‖ ARC (2 bytes: the
               (ICC MK option A,      response code in ASCII, ``3030`` for ``00``)
               Mastercard session
               key of ATC and 9F37)
others (VISA,  Visa CVN 18            ARPC (4 bytes, method 2) ‖ CSU (4 bytes: card
CB, AMEX, JCB) (ICC MK option B,      status update, ``00800000`` = the issuer approves,
               EMV common session     ``00000000`` = it declines)
               key of the ATC)
=============  =====================  =================================================

The simulator has no Amex, CB or JCB specific cryptogram version: their cards use Visa's
CVN 18, which is the EMV common core definition's method with TDES keys.

The ARQC covers, in this order, ``9F02 9F03 9F1A 95 5F2A 9A 9C 9F37 82 9F36`` and then the
whole issuer application data ``9F10`` (CVN 18) or the card verification results it carries
(CVN 16, bytes 3-8). ``pyemv`` runs two-key TDES through ``cryptography``'s deprecated
TripleDES; those deprecation warnings are silenced around its calls only.

Sans-IO: keys come in as bytes, from ``fixtures/keys.yaml`` through the harness.
"""

from __future__ import annotations

import hmac
import string
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum

from cryptography.utils import CryptographyDeprecationWarning
from pyemv.cvn import MasterCardCVN16, VisaCVN18

#: Registered application provider identifiers (the first 5 bytes of an AID) and their scheme:
#: the card names its applications' brands with them, the issuer checks the selected one.
RID_BRANDS = {
    "A000000042": "CB",
    "A000000003": "VISA",
    "A000000004": "MASTERCARD",
    "A000000025": "AMEX",
}
#: The EMV data elements the ARQC covers, in order (then 9F10, or the CVR it carries).
ARQC_TAGS = ("9F02", "9F03", "9F1A", "95", "5F2A", "9A", "9C", "9F37", "82", "9F36")
#: Response codes with which the issuer approves (a payment; a zero-amount verification).
ISSUER_APPROVALS = ("00", "85")
CSU_APPROVED = "00800000"  # Visa card status update: byte 2 bit 8, "issuer approves"
CSU_DECLINED = "00000000"


class CryptogramError(ValueError):
    """EMV data from which no cryptogram can be computed (a tag missing or not hex)."""


class CryptogramVersion(StrEnum):
    VISA_CVN18 = "visa_cvn18"
    MASTERCARD_CVN16 = "mastercard_cvn16"


#: Issuer application data (9F10) the card sends, per version: Visa format 0 (length 06,
#: derivation key index 01, CVN 12 = 18, CVR 03A00000); M/Chip (key derivation index 01,
#: CVN 10 = 16, CVR A00000000000, DAC 0000, counters).
ISSUER_APPLICATION_DATA = {
    CryptogramVersion.VISA_CVN18: "06011203A00000",
    CryptogramVersion.MASTERCARD_CVN16: "0110A00000000000" + "0000" + "0000000000000000",
}


def cryptogram_version(brand: str) -> CryptogramVersion:
    """The issuer's cryptogram version for a card of ``brand`` (the card's own brand)."""
    if brand.upper() == "MASTERCARD":
        return CryptogramVersion.MASTERCARD_CVN16
    return CryptogramVersion.VISA_CVN18


@dataclass(frozen=True)
class IssuerMasterKeys:
    """An issuer's EMV master keys (double-length TDES): application cryptograms, secure
    messaging integrity and confidentiality. Test keys only; ``repr`` hides them."""

    ac: bytes = field(repr=False)
    smi: bytes = field(repr=False)
    smc: bytes = field(repr=False)

    def __post_init__(self) -> None:
        for name in ("ac", "smi", "smc"):
            if len(getattr(self, name)) != 16:
                raise ValueError(f"issuer master key {name} must be 16 bytes (two-key TDES)")


@contextmanager
def _tdes_warnings_ignored() -> Iterator[None]:
    """pyemv's TDES goes through cryptography's deprecated TripleDES: expected here only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning)
        yield


class CardCryptography:
    """One card's ICC master keys and the cryptograms made with them, for the chip (ARQC,
    ARPC check) and for the issuer (ARQC check, ARPC).

    Built from the issuer's master keys, the PAN and the PAN sequence number, as the
    personalisation bureau derives a card's keys; it keeps only the derived ICC keys.
    """

    def __init__(
        self, brand: str, issuer_keys: IssuerMasterKeys, pan: str, pan_sequence: str = "00"
    ) -> None:
        self.version = cryptogram_version(brand)
        cls = VisaCVN18 if self.version is CryptogramVersion.VISA_CVN18 else MasterCardCVN16
        with _tdes_warnings_ignored():
            self._cvn: VisaCVN18 | MasterCardCVN16 = cls(
                iss_mk_ac=issuer_keys.ac,
                iss_mk_smi=issuer_keys.smi,
                iss_mk_smc=issuer_keys.smc,
                pan=pan,
                psn=pan_sequence,
            )

    def __repr__(self) -> str:
        return f"CardCryptography({self.version.value})"

    @property
    def issuer_application_data(self) -> str:
        """Tag 9F10, hex, as the card sends it."""
        return ISSUER_APPLICATION_DATA[self.version]

    def arqc(self, emv: Mapping[str, str]) -> str:
        """The application cryptogram over ``emv`` (hex strings by tag, with 9F10), 16 hex
        digits; :class:`CryptogramError` when a tag it covers is missing or not hex."""
        data = {tag: _binary(emv, tag) for tag in (*ARQC_TAGS, "9F10")}
        common = {f"tag_{tag.lower()}": data[tag] for tag in ARQC_TAGS}
        with _tdes_warnings_ignored():
            if isinstance(self._cvn, VisaCVN18):
                cryptogram = self._cvn.generate_ac(**common, tag_9f10=data["9F10"])
            else:
                if len(data["9F10"]) < 8:
                    raise CryptogramError("9F10 is too short to carry the CVR")
                cryptogram = self._cvn.generate_ac(**common, cvr=data["9F10"][2:8])
        return cryptogram.hex().upper()

    def verify_arqc(self, emv: Mapping[str, str]) -> bool:
        """The issuer's check: 9F26 is the cryptogram of the rest of ``emv``."""
        try:
            expected = self.arqc(emv)
        except CryptogramError:
            return False
        return hmac.compare_digest(expected, str(emv.get("9F26", "")).upper())

    def issuer_authentication_data(self, arqc: str, atc: str, response_code: str) -> str:
        """Tag 91 for an answer ``response_code`` to the ARQC ``arqc`` of counter ``atc``
        (hex): the ARPC and what it authenticates (CSU or ARC, see the module's table)."""
        arqc_bytes, atc_bytes = bytes.fromhex(arqc), bytes.fromhex(atc)
        with _tdes_warnings_ignored():
            if isinstance(self._cvn, VisaCVN18):
                approved = response_code in ISSUER_APPROVALS
                csu = CSU_APPROVED if approved else CSU_DECLINED
                arpc = self._cvn.generate_arpc(arqc_bytes, atc_bytes, bytes.fromhex(csu))
                return (arpc.hex() + csu).upper()
            arc = response_code.encode("ascii")[:2].ljust(2, b" ")
            arpc = self._cvn.generate_arpc(arqc_bytes, arc)
            return (arpc + arc).hex().upper()

    def issuer_approves(self, tag_91: str | None, arqc: str, atc: str) -> bool:
        """The chip's check of the issuer's answer (second GENERATE AC): True only if tag 91
        is authentic for this ARQC and says the issuer approves."""
        if not tag_91 or len(tag_91) % 2 or any(c not in "0123456789abcdefABCDEF" for c in tag_91):
            return False
        tag_91 = tag_91.upper()
        if isinstance(self._cvn, VisaCVN18):
            csu = tag_91[8:]
            approving = csu == CSU_APPROVED
            code = "00" if approving else "05"
        else:
            arc = bytes.fromhex(tag_91[16:]) if len(tag_91) == 20 else b""
            code = arc.decode("ascii", errors="replace")
            approving = code in ISSUER_APPROVALS
        if not approving:
            return False
        expected = self.issuer_authentication_data(arqc, atc, code)
        return hmac.compare_digest(expected, tag_91)


def _binary(emv: Mapping[str, str], tag: str) -> bytes:
    value = emv.get(tag)
    if not isinstance(value, str) or not value:
        raise CryptogramError(f"EMV tag {tag} is missing")
    if len(value) % 2 or any(c not in string.hexdigits for c in value):
        raise CryptogramError(f"EMV tag {tag} is not hex")
    return bytes.fromhex(value)


__all__ = [
    "ARQC_TAGS",
    "RID_BRANDS",
    "CardCryptography",
    "CryptogramError",
    "CryptogramVersion",
    "IssuerMasterKeys",
    "cryptogram_version",
]
