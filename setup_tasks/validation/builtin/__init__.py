"""The built-in checks: every module here registers its checks when ``validation.catalog`` imports it."""
