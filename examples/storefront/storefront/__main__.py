"""``python -m storefront``."""

from storefront.app import main

main()
