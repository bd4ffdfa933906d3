"""The reference stack in this repository as a target (``hil stack serve``)."""
