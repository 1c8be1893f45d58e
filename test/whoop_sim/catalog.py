"""catalog.py -- what the athlete generator draws from: sports, first and
last names, route names, home zones and trip offsets, and the seeded draws
(rng, det_uuid) every random stream comes from."""

import random
import unicodedata

from .times import Zone

# sport: (sport_id, min minutes, max minutes, HRR fraction lo, hi,
#         speed m/s (lo, hi) or None, outdoor altitude possible)
SPORTS = {
    "running": (0, 25, 90, .58, .76, (2.5, 3.9), True),
    "cycling": (1, 45, 120, .50, .70, (6.0, 9.0), True),
    "basketball": (17, 45, 110, .55, .72, None, False),
    "rowing": (18, 20, 60, .55, .72, (3.4, 4.4), False),
    "soccer": (30, 60, 105, .55, .74, None, False),
    "swimming": (33, 30, 70, .50, .68, (0.8, 1.25), False),
    "tennis": (34, 45, 120, .45, .65, None, False),
    "pilates": (43, 30, 60, .25, .40, None, False),
    "yoga": (44, 30, 75, .22, .38, None, False),
    "weightlifting": (45, 35, 80, .38, .55, None, False),
    "functional-fitness": (48, 30, 60, .55, .72, None, False),
    "hiking": (52, 60, 120, .35, .55, (1.0, 1.5), True),
    "walking": (63, 20, 90, .22, .38, (1.25, 1.65), True),
    "hiit": (96, 20, 45, .62, .80, None, False),
    "spin": (97, 30, 60, .56, .74, None, False),
}
SPORT_NAMES = sorted(SPORTS)
SHORT_SPORTS = [s for s in SPORT_NAMES if SPORTS[s][1] <= 35]
# a regional favourite some athletes add to theirs (drawn apart, so the
# others' data does not depend on it)
REGIONAL_SPORTS = {
    "kyūdō": (235, 40, 90, .15, .30, None, False),
    "pétanque": (236, 45, 110, .12, .28, None, False),
}
SPORTS.update(REGIONAL_SPORTS)
# names users give outdoor routes; an unknown field WHOOP may add
ROUTE_NAMES = ("Tour du Léman", "Zürichsee-Runde", "Parc de la Tête d'Or",
               "Retiro – Casa de Campo", "Søndermarken loop", "箱根駅伝コース",
               "Sunrise loop 🌅", "Riverside 10k")
ZONE_KEYS = ("zone_zero_milli", "zone_one_milli", "zone_two_milli",
             "zone_three_milli", "zone_four_milli", "zone_five_milli")

FIRST_NAMES = ("Ava", "Ben", "Chloé", "Diego", "Emma", "Finn", "Grace", "Hugo",
               "Inès", "José", "Kira", "Liam", "Maëlle", "Noah", "Olivia", "Pablo",
               "Quinn", "Renée", "Sam", "Tara", "Umar", "Vera", "Will", "Xenia",
               "Yusuf", "Zoë", "Aiko", "Björn", "Carmen", "Dev")
LAST_NAMES = ("Smith", "García", "Müller", "Tanaka", "Okafor", "Rossi",
              "Nguyễn", "Kowalski", "Silva", "Ångström", "Patel", "Dubois",
              "Kim", "Oconnor", "Haddad", "Novák", "López", "Schmidt",
              "Brown", "Ivanova", "Martin", "Fischer", "Santos", "Weber")


def ascii_fold(text):
    """ascii_fold spells a name without its accents, for an e-mail address."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


HOME_ZONES = [
    Zone("America/New_York", -300, "us"),
    Zone("Europe/Berlin", 60, "eu"),
    Zone("Europe/London", 0, "eu", zero_as_z=True),
    Zone("America/Los_Angeles", -480, "us"),
    Zone("Asia/Tokyo", 540),
    Zone("Australia/Sydney", 600, "au", south=True),
    Zone("Asia/Kolkata", 330),
    Zone("America/Sao_Paulo", -180, south=True),
]
HOME_WEIGHTS = [4, 3, 2, 3, 1, 1, 1, 1]
TRIP_OFFSETS = [-480, -360, -300, -180, 0, 60, 120, 330, 480, 540, 600]
TRIP_ZONES = {o: Zone("trip%+d" % o, o, None, zero_as_z=False) for o in TRIP_OFFSETS}


def rng(*parts):
    return random.Random(":".join(str(p) for p in parts))


def clamp(x, lo, hi):
    return lo if x < lo else hi if x > hi else x


_UUID_MASK = ~((0xf000 << 64) | (0xc000 << 48))
_UUID_BITS = (0x4000 << 64) | (0x8000 << 48)


def det_uuid(r):
    """det_uuid draws a version-4 UUID string from r."""
    h = "%032x" % ((r.getrandbits(128) & _UUID_MASK) | _UUID_BITS)
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])
