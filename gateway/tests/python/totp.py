"""Codes of an enrolled TOTP as pyotp (an implementation nobody here wrote)
computes them from the otpauth:// URI the gateway answered. Run by
gateway/tests/e2e/mfa.rs:

    totp.py URI UNIX_TIME [UNIX_TIME ...]   the code at each time, one a line
    totp.py URI --describe                  the URI's parameters, as JSON
"""

import json
import sys

import pyotp

uri = sys.argv[1]
totp = pyotp.parse_uri(uri)
if sys.argv[2] == "--describe":
    print(
        json.dumps(
            {
                "issuer": totp.issuer,
                "name": totp.name,
                "digits": totp.digits,
                "interval": totp.interval,
                "digest": totp.digest().name,
                "secret": totp.secret,
            }
        )
    )
else:
    for t in sys.argv[2:]:
        print(totp.at(int(t)))
