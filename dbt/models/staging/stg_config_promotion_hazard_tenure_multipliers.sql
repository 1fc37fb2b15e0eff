select
    tenure_band,
    min_tenure,
    max_tenure,
    multiplier
from {{ ref('config_promotion_hazard_tenure_multipliers') }}
