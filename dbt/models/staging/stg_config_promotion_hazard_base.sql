select
    base_rate,
    level_dampener_factor
from {{ ref('config_promotion_hazard_base') }}
