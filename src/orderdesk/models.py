"""Every feature's tables, imported once so that metadata is complete (migrations, tests)."""

from orderdesk.accounts import models as _accounts  # noqa: F401
from orderdesk.comms import models as _comms  # noqa: F401
from orderdesk.comms import outbound_models as _comms_outbound  # noqa: F401
from orderdesk.core.db import Base
from orderdesk.fulfillment import models as _fulfillment  # noqa: F401
from orderdesk.imports import models as _imports  # noqa: F401
from orderdesk.integrations import models as _integrations  # noqa: F401
from orderdesk.inventory import models as _inventory  # noqa: F401
from orderdesk.invoices import models as _invoices  # noqa: F401
from orderdesk.orders import models as _orders  # noqa: F401
from orderdesk.portal import models as _portal  # noqa: F401
from orderdesk.shops import models as _shops  # noqa: F401
from orderdesk.tenants import models as _tenants  # noqa: F401
from orderdesk.tracking import models as _tracking  # noqa: F401
from orderdesk.workqueue import models as _workqueue  # noqa: F401

metadata = Base.metadata
