"""Admin for tenants, their API keys and the management API's tokens.

Every write goes through tenants.services, the path the management API, the commands and
the config importer take: tenants (tenant.py), keys (api_key.py: issued once, the plaintext
shown on that one response), management tokens (management_token.py: issued by a command,
revoked here). Importing the modules registers their admin classes.
"""

from tenants.admin import api_key, management_token, tenant

__all__ = ["api_key", "management_token", "tenant"]
