"""The official NTU RGB+D 60 action names, indexed by the clip name's action number Aaaa (A001 .. A060).

Data table (Shahroudy et al., CVPR 2016, the dataset's README). A050 .. A060 are two-person interactions.
"""

from __future__ import annotations

NTU60_ACTIONS: tuple[str, ...] = (
    "drink water",  # A001
    "eat meal/snack",
    "brushing teeth",
    "brushing hair",
    "drop",  # A005
    "pickup",
    "throw",
    "sitting down",
    "standing up (from sitting position)",
    "clapping",  # A010
    "reading",
    "writing",
    "tear up paper",
    "wear jacket",
    "take off jacket",  # A015
    "wear a shoe",
    "take off a shoe",
    "wear on glasses",
    "take off glasses",
    "put on a hat/cap",  # A020
    "take off a hat/cap",
    "cheer up",
    "hand waving",
    "kicking something",
    "reach into pocket",  # A025
    "hopping (one foot jumping)",
    "jump up",
    "make a phone call/answer phone",
    "playing with phone/tablet",
    "typing on a keyboard",  # A030
    "pointing to something with finger",
    "taking a selfie",
    "check time (from watch)",
    "rub two hands together",
    "nod head/bow",  # A035
    "shake head",
    "wipe face",
    "salute",
    "put the palms together",
    "cross hands in front (say stop)",  # A040
    "sneeze/cough",
    "staggering",
    "falling",
    "touch head (headache)",
    "touch chest (stomachache/heart pain)",  # A045
    "touch back (backache)",
    "touch neck (neckache)",
    "nausea or vomiting condition",
    "use a fan (with hand or paper)/feeling warm",
    "punching/slapping other person",  # A050
    "kicking other person",
    "pushing other person",
    "pat on back of other person",
    "point finger at the other person",
    "hugging other person",  # A055
    "giving something to other person",
    "touch other person's pocket",
    "handshaking",
    "walking towards each other",
    "walking apart from each other",  # A060
)


def action_name(number: int) -> str:
    """The class name of action number `number` (1-based, as in A001); ValueError outside 1..60."""
    if not 1 <= number <= len(NTU60_ACTIONS):
        raise ValueError(f"expected an NTU RGB+D 60 action number in 1..60 (A001..A060), got A{number:03d}")
    return NTU60_ACTIONS[number - 1]
