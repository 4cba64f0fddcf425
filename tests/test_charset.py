import pytest

from captcha.charset import DEFAULT_CHARSET, Charset, CharsetError, spell_out


def test_default_is_the_course_map():
    assert len(DEFAULT_CHARSET) == 36
    assert DEFAULT_CHARSET.alphabet[:10] == "0123456789" and DEFAULT_CHARSET.alphabet[10:] == "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    assert DEFAULT_CHARSET.fold_case


def test_encode_decode_round_trip_and_case_folding():
    cs = Charset()
    assert cs.encode("A7K2") == [10, 7, 20, 2]
    assert cs.encode("a7k2") == cs.encode("A7K2")
    assert cs.decode(cs.encode("z09y")) == "Z09Y"


def test_unknown_characters_are_all_named():
    with pytest.raises(CharsetError) as err:
        Charset().encode("a-b_c-")
    msg = str(err.value)
    assert "'-'" in msg and "'_'" in msg and msg.count("'-'") == 1


def test_mixed_case_alphabet_does_not_fold():
    cs = Charset("abAB")
    assert not cs.fold_case
    assert cs.encode("aB") == [0, 3]


def test_an_alphabet_of_one_case_folds_labels_to_it():
    lower = Charset("0123abc")
    assert lower.fold_case and lower.lower_case and lower.normalize("aB3") == "ab3" and lower.encode("C1") == [6, 1]
    assert not DEFAULT_CHARSET.lower_case and DEFAULT_CHARSET.normalize("aB3") == "AB3"
    assert not Charset("0123").lower_case  # no letters: nothing to fold


def test_the_labels_case_decides_the_charset_when_none_is_given():
    from captcha.charset import CASED_ALPHABET, LOWER_ALPHABET, for_labels

    assert for_labels(["A7K2", "B3C4"]) is DEFAULT_CHARSET
    assert for_labels(["1234"]) is DEFAULT_CHARSET  # digits only: the course's map
    lower = for_labels(["a7k2", "b3c4", "Xyzw"])  # 1 upper-case letter in 9: a slip, folded down
    assert lower.alphabet == LOWER_ALPHABET and lower.fold_case and lower.normalize("Xyz") == "xyz"
    cased = for_labels(["aBcD", "eF12"])  # both cases, each a fair share: a case-sensitive site
    assert cased.alphabet == CASED_ALPHABET and not cased.fold_case and cased.encode("aA") == [36, 10]
    assert for_labels(["ab+c"]).alphabet == LOWER_ALPHABET + "+"


def test_dict_round_trip_and_bad_dicts():
    cs = Charset("XYZ12", fold_case=True)
    assert Charset.from_dict(cs.to_dict()) == cs
    with pytest.raises(CharsetError):
        Charset.from_dict({"letters": "AB"})
    with pytest.raises(CharsetError):
        Charset("AA")
    with pytest.raises(IndexError):
        cs.decode([7])


def test_covering_adds_what_the_labels_use_beyond_the_base():
    from captcha.charset import covering

    assert covering(["A7K2", "b3c4"]) is DEFAULT_CHARSET  # lower case folds: nothing to add
    cs = covering(["3+5=", "a@b", "ZZ"])
    assert cs.alphabet == DEFAULT_CHARSET.alphabet + "".join(sorted("+=@"))
    assert cs.fold_case and cs.encode("a@b") == [10, len(DEFAULT_CHARSET) + 2, 11]
    digits = Charset("0123456789")
    assert covering(["12x4"], digits).alphabet == "0123456789X"  # spelled as the base spells labels


def test_ranges_are_spelled_out_as_users_type_them():
    assert spell_out("0-9A-F") == "0123456789ABCDEF" and spell_out("a-c") == "abc"
    assert spell_out("+-=0-2") == "+-=012" and spell_out("-0-2") == "-012"  # a '-' between no range is itself
    assert spell_out("9-0") == "9-0" and spell_out("A-c") == "A-c"  # backwards, or across cases: as typed
    assert Charset(spell_out("0-9A-Z")) == DEFAULT_CHARSET
