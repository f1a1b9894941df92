"""The words the extraction rules know, folded to lower case.

Which words may stand in a name, and which words around a name say what kind of
thing it is. The patterns that read these words live with the rules that use them.
"""

from __future__ import annotations

from agent_trio.extract._dates import MONTHS
from agent_trio.graph import LEGAL_FORMS as GRAPH_LEGAL_FORMS

__all__ = [
    "EVENT_WORDS",
    "FUNCTION_WORDS",
    "LAUNCH_VERBS",
    "LEGAL_FORMS",
    "NOT_PLACE_BEFORE_IN",
    "OF_HEADS",
    "ORG_NOUNS",
    "ORG_PREPOSITIONS",
    "ORG_SUFFIXES",
    "ORG_VERBS",
    "PARTICLES",
    "PERSON_VERBS",
    "PLACE_NOUNS",
    "PLACE_PREPOSITIONS",
    "PLACE_SUFFIXES",
    "PRODUCT_NOUNS",
    "RELATIVES",
    "ROLES",
    "SEQUENCE_WORDS",
    "STOP",
    "TIME_WORDS",
    "TITLES",
]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# -- what may stand in a name ------------------------------------------------------------

# the graph's: an entity's key drops a trailing legal form (see agent_trio.graph.entity_key)
LEGAL_FORMS = GRAPH_LEGAL_FORMS
STOP = _words(
    "a about according across after also although among an and another any as at because "
    "before between both but by despite during each earlier early even every finally "
    "first following for from he her here his however i if in initially instead it its "
    "last later like many meanwhile more most my next no not now once one only or other "
    "our over per previously recently several she since so some soon still such that the "
    "their them then there these they this those though three through today together "
    "tomorrow two under unlike until we what when where whereas which while who why with "
    "within without yes yesterday you your"
)
ROLES = _words(
    "ceo cto cfo coo cmo cio cpo vp svp evp chief officer president chair chairman "
    "chairwoman chairperson director founder co-founder cofounder head manager engineer "
    "executive vice senior lead principal professor partner dr mr mrs ms prof sir dame"
)
TITLES = _words("dr mr mrs ms prof sir dame")
TIME_WORDS = frozenset(
    {m.casefold() for m in MONTHS}
    | _words("monday tuesday wednesday thursday friday saturday sunday")
)
FUNCTION_WORDS = _words(
    "engineering operations marketing sales research product products technology finance "
    "strategy digital data design development infrastructure communications people "
    "partnerships business legal security"
)
SEQUENCE_WORDS = _words("series round phase stage version chapter section figure table step part")
PARTICLES = _words("& de van von der den da di du la le del")
OF_HEADS = _words(
    "bank university institute ministry department museum college school council office "
    "board academy federation association"
)

# -- what kind of thing a name is ----------------------------------------------------------

ORG_SUFFIXES = LEGAL_FORMS | _words(
    "labs lab systems technologies technology group holdings ventures capital partners "
    "networks software robotics analytics energy bank university institute foundation "
    "company industries solutions dynamics media studios pharma therapeutics aerospace "
    "motors airlines logistics consulting associates agency"
)
EVENT_WORDS = _words(
    "summit conference expo festival forum symposium hackathon week meetup congress fair "
    "convention workshop awards olympics"
)
PLACE_SUFFIXES = _words(
    "city county province region state street avenue river lake mountain mountains island "
    "islands bay valley harbour harbor port airport station park field farm coast sea ocean "
    "gulf strait peninsula desert forest district"
)
PRODUCT_NOUNS = _words(
    "gateway platform app application device sensor sensors dashboard service software "
    "tool toolkit model engine api chip drone drones robot camera kit module controller "
    "firmware suite library framework headset vehicle"
)
LAUNCH_VERBS = _words(
    "launched launches released releases unveiled unveils introduced introduces shipped "
    "ships debuted debuts"
)
PERSON_VERBS = _words(
    "said says told joined joins left leaves resigned retired explained added noted "
    "recalled stepped studied graduated spent became wrote believes thinks who"
)
ORG_VERBS = _words("acquired acquires raised employs hired reported sells opened announced")
ORG_PREPOSITIONS = _words("joined acquired of into")
ORG_NOUNS = _words(
    "company firm startup start-up division subsidiary group utility investor maker "
    "manufacturer brand provider operator fund laboratory business agency supplier vendor "
    "retailer insurer consultancy developer publisher studio carrier airline"
)
PLACE_PREPOSITIONS = _words("in near")
PLACE_NOUNS = _words(
    "farm farms field district region city town village site harbour harbor port island "
    "coast valley county province municipality"
)
RELATIVES = _words("whose which that where when and but or who")
NOT_PLACE_BEFORE_IN = _words("invested invests investing interest stake role")
