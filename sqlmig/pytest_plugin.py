"""pytest plugin for sqlmig (fixtures come with the testing toolkit)."""
