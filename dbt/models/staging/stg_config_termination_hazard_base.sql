select
    base_rate,
    level_discount_factor,
    min_level_discount_multiplier
from {{ ref('config_termination_hazard_base') }}
