"""Example portal services that delegate authentication to authserver."""
