"""lwIP as a target: our firmware-style program around lwIP, built from Debian's source package.

:mod:`targets.lwip.build` fetches and compiles it (cached outside the repository); the program
(``main.c``) serves the level-0 services echo 7, discard 9 and chargen 19 on a TAP.
"""
