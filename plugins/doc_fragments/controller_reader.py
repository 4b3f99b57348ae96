"""Documentation of the attributes shared by relayguard's internal actions that run on the
controller and only read variables (relay_inputs, relay_plan): `relayguard.mail.controller_reader`.
"""

from __future__ import annotations


class ModuleDocFragment:
    # A literal: ansible-test's yamllint reads it without running the code.
    DOCUMENTATION = r"""
attributes:
  check_mode:
    support: full
    description: Reads variables only.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to diff.
  platform:
    support: full
    platforms: all
    description: Runs on the controller; reads no host.
"""
