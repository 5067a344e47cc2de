"""PPO agents and their networks; they land with the PPO issue."""
