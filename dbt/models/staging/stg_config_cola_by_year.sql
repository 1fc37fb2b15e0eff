select
    year,
    cola_rate
from {{ ref('config_cola_by_year') }}
