"""Speed and memory against the peer codes (MACE), measured in one run (``tensorpot bench``)."""
