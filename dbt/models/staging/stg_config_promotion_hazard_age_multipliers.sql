select
    age_band,
    min_age,
    max_age,
    multiplier
from {{ ref('config_promotion_hazard_age_multipliers') }}
