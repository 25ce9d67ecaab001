"""The part-of-speech tags the text analysis reads, and the entity types they give.

Tags follow jieba's set (``nr`` person, ``ns`` place, ``nt`` organisation, ``nz``
other proper noun, ...) plus one extension for user dictionaries: ``nl``, a location
name that is not a political unit (a street, park or mountain; WeiboNER's LOC).
"""

PERSON, ORGANISATION, GEOPOLITICAL, LOCATION = "PER", "ORG", "GPE", "LOC"
ENTITY_TYPES = (PERSON, ORGANISATION, GEOPOLITICAL, LOCATION)

# Name tag -> the entity type a token so tagged is.
NAME_TAG_TYPES = {
    "nr": PERSON,
    "nrt": PERSON,
    "nrfg": PERSON,
    "ns": GEOPOLITICAL,
    "nl": LOCATION,
    "nt": ORGANISATION,
    "nz": ORGANISATION,
}

# A protected span (a hashtag's text) that is not one dictionary word.
TAG_HASHTAG = "hashtag"
