"""``python -m client_portal [serve|check]``."""

from client_portal.app import main

main()
