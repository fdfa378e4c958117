"""Print the README's family x role table of config keys from the registry (knowledge as data).

Run: python scripts/roles_table.py
"""

from dropout_tune.registry import FAMILY_DROPOUT
from dropout_tune.roles import ROLES, Role

# lora is PEFT's (peft_config.lora_dropout), the same for every family; head (DropHead) has no config key: its
# sites are injected at each family's attention output projection (the registry's head_projection)
TABLE_ROLES = [role for role in ROLES if role not in (Role.LORA.value, Role.HEAD.value)]


def main() -> None:
    print("| family | " + " | ".join(TABLE_ROLES) + " |")
    print("|---" * (len(TABLE_ROLES) + 1) + "|")
    for model_type, family in FAMILY_DROPOUT.items():
        cells = []
        for role in TABLE_ROLES:
            keys = [key for key, roles in family.config_keys.items() if role in roles]
            has_site = role in family.sites.values()
            cells.append(", ".join(f"`{k}`" for k in keys) if keys else ("(live only)" if has_site else "—"))
        print(f"| {model_type} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
