from hashtagger.bundle.format import read_bundle


def test_tiny_bundle_opens(tiny_bundle):
    bundle = read_bundle(tiny_bundle)
    assert len(bundle.vocab) == 9  # more than a top-5: a top-5 assertion can fail
