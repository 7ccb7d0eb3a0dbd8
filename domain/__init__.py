"""Business rules and transactions. Imports nothing from server/, schema/, resolvers/ or jobs/."""
